// hellochat browser client. Speaks the v2 protocol (subprotocol
// "hellochat.v2", see docs/protocol.md) on /ws of the page's own origin.
//
// Rule for everything below: data from the server (names, message text,
// error messages) only ever reaches the DOM through textContent, never as HTML.
'use strict';

(function () {
  const PROTOCOL = 'hellochat.v2';
  const NAME_KEY = 'hellochat.name';
  const FRAME_LIMIT = 16 * 1024 - 256; // router closes the socket (1009) above 16 KiB; keep a margin
  const TYPING_SEND_EVERY = 2000;
  const TYPING_SHOW_FOR = 3000;
  const PAGE_SIZE = 50;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;
  const NEAR_BOTTOM_PX = 120;
  const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
  // Codes where trying again cannot help, so failed messages get no retry button.
  const FINAL_ERRORS = new Set(['too_large', 'empty', 'bad_id', 'bad_json', 'binary']);

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), statusText: $('status-text'),
    roomName: $('room-name'), copyLink: $('copy-link'), shareUrl: $('share-url'), qr: $('qr'),
    myName: $('my-name'), changeName: $('change-name'),
    sidebarToggle: $('sidebar-toggle'), sidebar: $('sidebar'),
    scroller: $('scroller'), messages: $('messages'), empty: $('empty'), loadOlder: $('load-older'),
    typing: $('typing'), presence: $('presence'), presenceCount: $('presence-count'),
    composer: $('composer'), input: $('message-input'), send: $('send-button'),
    composerError: $('composer-error'), byteCount: $('byte-count'),
    nameModal: $('name-modal'), nameForm: $('name-form'), nameInput: $('name-input'),
    nameError: $('name-error'), nameCancel: $('name-cancel'),
  };

  const encoder = new TextEncoder();
  const byteLength = (s) => encoder.encode(s).length;

  const state = {
    name: '',
    room: '',
    maxMessageBytes: 4096,
    // Connection. `conn` numbers sockets so events of an abandoned one are ignored.
    ws: null,
    conn: 0,
    welcomed: false,
    welcomedAt: 0,
    resuming: false,       // this socket was opened with after=
    attempt: 0,
    retryTimer: null,
    everConnected: false,
    stopped: false,        // do not reconnect (bad room, or waiting for a new name)
    serverReconnecting: false,
    // Messages.
    bySeq: new Map(),      // seq -> element; also the dedupe set
    highestSeq: 0,         // highest seq seen in message/history frames (not acks: see onAck)
    lowestSeq: 0,
    hasOlder: false,
    loadingOlder: false,
    pending: new Map(),    // client id -> {id, text, el, sentOn}
    idPrefix: randomId(6),
    // Our secret: the room tells our resends apart by (name, key, id), so
    // another member who sees our ids cannot make one of ours a duplicate.
    key: randomId(24),
    idCounter: 0,
    // Misc.
    lastTypingSent: 0,
    typers: new Map(),     // name -> timer
    presence: new Map(),   // name -> open tabs, from the list and joined/left since
    unread: 0,
    today: new Date().toDateString(),
  };

  // ---------- small helpers ----------

  function randomId(n) {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    let out = '';
    while (out.length < n) {
      const bytes = crypto.getRandomValues(new Uint8Array(n * 2));
      for (const b of bytes) {
        // 252 = 7*36: dropping the rest keeps every character equally likely.
        if (b < 252 && out.length < n) out += alphabet[b % 36];
      }
    }
    return out;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  const pad = (n) => String(n).padStart(2, '0');

  function formatTime(ts) {
    const d = new Date(ts);
    const hms = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (d.toDateString() === new Date().toDateString()) return hms;
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + hms;
  }

  // Stable per-name colour so people are easy to tell apart at a glance.
  function nameHue(name) {
    let h = 2166136261; // FNV-1a, so similar names still get different colours
    for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
    return h % 360;
  }

  function avatar(name) {
    const a = el('span', 'avatar', (Array.from(name)[0] || '?').toUpperCase());
    a.setAttribute('aria-hidden', 'true');
    a.style.setProperty('--hue', String(nameHue(name)));
    return a;
  }

  function validateName(raw) {
    const name = String(raw == null ? '' : raw).trim();
    const len = Array.from(name).length; // characters, not UTF-16 units
    if (CONTROL_CHARS.test(name)) return { error: 'Names cannot contain control characters.' };
    if (len < 3) return { error: 'Please use at least 3 characters.' };
    if (len > 20) return { error: 'Please use at most 20 characters.' };
    return { name };
  }

  function storage(op, value) {
    // localStorage throws in some privacy modes; the app must work without it.
    try {
      if (op === 'get') return localStorage.getItem(NAME_KEY);
      localStorage.setItem(NAME_KEY, value);
    } catch (e) { /* ignore */ }
    return null;
  }

  // ---------- room & sharing ----------

  function pickRoom() {
    const params = new URLSearchParams(location.search);
    const asked = (params.get('room') || '').trim();
    if (asked && byteLength(asked) <= 64 && !CONTROL_CHARS.test(asked)) return asked;
    // No (usable) room: make one up and put it in the address bar so the URL can be shared as is.
    const room = randomId(8);
    params.set('room', room);
    history.replaceState(history.state, '', location.pathname + '?' + params.toString() + location.hash);
    return room;
  }

  // The link to share holds only the room: ?name= is for tests and must not be passed on.
  function shareURL() {
    return location.origin + location.pathname + '?room=' + encodeURIComponent(state.room);
  }

  function showRoom() {
    ui.roomName.textContent = state.room;
    ui.roomName.title = state.room;
    const url = shareURL();
    ui.shareUrl.textContent = url;
    ui.qr.src = '/qr.png?text=' + encodeURIComponent(url);
    document.title = state.room + ' · hellochat';
  }

  async function copyLink() {
    const url = shareURL();
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(url);
        ok = true;
      }
    } catch (e) { /* fall back below */ }
    if (!ok) {
      // Clipboard API needs a secure context; plain http on a LAN address is common here.
      const ta = el('textarea');
      ta.value = url;
      ta.setAttribute('readonly', '');
      ta.className = 'offscreen';
      document.body.appendChild(ta);
      ta.select();
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      ta.remove();
    }
    ui.copyLink.textContent = ok ? 'Copied!' : 'Copy failed';
    ui.copyLink.classList.toggle('flash', true);
    if (!ok) selectText(ui.shareUrl);
    setTimeout(() => {
      ui.copyLink.textContent = 'Copy link';
      ui.copyLink.classList.remove('flash');
    }, 1500);
  }

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // ---------- name ----------

  function openNameModal(firstTime, errorText) {
    ui.nameModal.hidden = false;
    ui.nameCancel.hidden = firstTime;
    ui.nameInput.value = state.name || storage('get') || '';
    ui.nameError.textContent = errorText || '';
    ui.nameInput.focus();
    ui.nameInput.select();
  }

  function closeNameModal() {
    ui.nameModal.hidden = true;
    ui.nameError.textContent = '';
    ui.input.focus();
  }

  function onNameSubmit(ev) {
    ev.preventDefault();
    const v = validateName(ui.nameInput.value);
    if (v.error) {
      ui.nameError.textContent = v.error;
      ui.nameInput.focus();
      return;
    }
    storage('set', v.name);
    const changed = v.name !== state.name;
    state.name = v.name;
    showName();
    closeNameModal();
    if (changed || state.stopped || !state.ws) {
      state.stopped = false;
      reconnectNow();
    }
  }

  function showName() {
    ui.myName.textContent = state.name;
    ui.myName.title = state.name;
    ui.myName.parentElement.hidden = !state.name;
  }

  // ---------- connection ----------

  const STATUS_LABEL = {
    connecting: 'Connecting…',
    connected: 'Connected',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
  };

  function setStatus(s, label) {
    ui.status.dataset.state = s;
    ui.statusText.textContent = label || STATUS_LABEL[s];
    document.body.dataset.conn = s;
    updateOlderButton();
  }

  function isOpen() {
    return state.ws !== null && state.welcomed && state.ws.readyState === WebSocket.OPEN;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (state.ws || state.stopped || !state.name) return;

    const conn = ++state.conn;
    // lines=1: frames that wait together come as one message, one per line.
    const q = new URLSearchParams({ room: state.room, name: state.name, lines: '1', key: state.key });
    // Resume: only the messages we missed come back in `history`.
    if (state.highestSeq > 0) q.set('after', String(state.highestSeq));
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';

    let ws;
    try {
      ws = new WebSocket(scheme + '//' + location.host + '/ws?' + q.toString(), PROTOCOL);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.welcomed = false;
    state.resuming = state.highestSeq > 0;
    setStatus(state.everConnected || state.attempt > 0 ? 'reconnecting' : 'connecting');

    ws.onmessage = (ev) => {
      if (conn !== state.conn || typeof ev.data !== 'string') return;
      for (const line of ev.data.split('\n')) {
        if (conn !== state.conn) return; // a frame closed this connection
        let frame;
        try { frame = JSON.parse(line); } catch (e) { continue; }
        if (frame && typeof frame === 'object') handleFrame(frame);
      }
    };
    ws.onclose = () => {
      if (conn !== state.conn) return;
      onClosed();
    };
  }

  function onClosed() {
    // Only a connection that lasted resets the backoff: a server that welcomes
    // and then drops us at once must not be hammered twice a second.
    if (state.welcomed && Date.now() - state.welcomedAt > 5000) state.attempt = 0;
    state.ws = null;
    state.welcomed = false;
    state.serverReconnecting = false;
    state.loadingOlder = false;
    clearTypers();
    ui.sidebar.classList.add('stale');
    if (state.stopped) {
      setStatus('offline');
      return;
    }
    if (navigator.onLine === false) {
      // Retrying is pointless until the browser is back online (see the 'online' listener).
      setStatus('offline', 'Offline (no network)');
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(state.retryTimer);
    // Exponential backoff with "equal jitter", so a restarted router is not hit by everyone at once.
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, state.attempt));
    const delay = base / 2 + Math.random() * (base / 2);
    state.attempt++;
    setStatus('reconnecting', 'Reconnecting in ' + Math.max(1, Math.round(delay / 1000)) + 's…');
    state.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    const old = state.ws;
    if (old) {
      state.ws = null;
      state.conn++; // ignore the old socket's close event
      try { old.close(1000, 'reconnect'); } catch (e) { /* ignore */ }
    }
    state.welcomed = false;
    state.loadingOlder = false;
    state.attempt = 0;
    connect();
  }

  function sendFrame(obj) {
    if (!isOpen()) return false;
    state.ws.send(JSON.stringify(obj));
    return true;
  }

  // ---------- incoming frames ----------

  function handleFrame(f) {
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'history': onHistory(f); break;
      case 'message': onLiveMessage(f); break;
      case 'ack': onAck(f); break;
      case 'presence': setPresence(f.users); break;
      case 'joined':
        if (typeof f.name === 'string') { systemLine(f.name + ' joined'); countPresence(f.name, 1); }
        break;
      case 'left':
        if (typeof f.name === 'string') { systemLine(f.name + ' left'); countPresence(f.name, -1); }
        break;
      case 'typing': onTyping(f.name); break;
      case 'status': onServerStatus(f.state); break;
      case 'error': onError(f); break;
      default: break; // newer server, older page: ignore what we do not know
    }
  }

  function onWelcome(f) {
    state.welcomed = true;
    state.welcomedAt = Date.now();
    state.everConnected = true;
    const lim = f.limits || {};
    if (Number.isInteger(lim.maxMessageBytes) && lim.maxMessageBytes > 0) state.maxMessageBytes = lim.maxMessageBytes;
    // The server may normalise the name; show what the others will see.
    if (typeof f.name === 'string' && f.name) { state.name = f.name; showName(); }
    ui.sidebar.classList.remove('stale');
    setStatus('connected');
  }

  function onHistory(f) {
    const msgs = Array.isArray(f.messages) ? f.messages : [];
    if (f.before != null) {
      prependOlder(msgs);
      state.hasOlder = !!f.more;
      state.loadingOlder = false;
      updateOlderButton();
      return;
    }
    // Connect-time history: newest page, or on resume everything after our highest seq.
    const firstLoad = state.bySeq.size === 0;
    const stick = firstLoad || nearBottom();
    for (const m of msgs) addMessage(m, false);
    // On a resume, `more` says nothing about what is above what we already show.
    if (!state.resuming || firstLoad) state.hasOlder = !!f.more;
    updateOlderButton();
    updateEmpty();
    if (stick) scrollToBottom();
    // Only now: anything the server already stored has been confirmed by the history above.
    resendPending();
  }

  function onLiveMessage(m) {
    const stick = nearBottom();
    const mine = m.id != null && state.pending.has(m.id);
    if (addMessage(m, true)) {
      updateEmpty();
      if (stick || mine) scrollToBottom();
    }
  }

  // An ack may come before or after the echo of the same message; whichever is
  // first confirms it, the other finds nothing left to do. Acks do not move
  // highestSeq: an ack can overtake earlier messages still on the wire, and
  // resuming after it would lose them.
  function onAck(f) {
    const p = state.pending.get(f.id);
    if (!p || !Number.isInteger(f.seq)) return;
    if (state.bySeq.has(f.seq)) { state.pending.delete(f.id); p.el.remove(); return; }
    const stick = nearBottom();
    state.pending.delete(f.id);
    confirmElement(p.el, { seq: f.seq, ts: f.ts, name: state.name });
    placeConfirmed(p.el, f.seq);
    if (stick) scrollToBottom();
  }

  function onServerStatus(s) {
    if (s === 'reconnecting') {
      state.serverReconnecting = true;
      setStatus('reconnecting', 'Room moving…');
    } else if (s === 'ready') {
      state.serverReconnecting = false;
      if (isOpen()) setStatus('connected');
    }
  }

  function onError(f) {
    const code = typeof f.code === 'string' ? f.code : 'error';
    const text = typeof f.message === 'string' && f.message ? f.message : code.replace(/_/g, ' ');
    const p = f.id != null ? state.pending.get(f.id) : undefined;
    if (p) {
      markFailed(p, code, text);
      systemLine('Message not sent: ' + text, 'error');
    } else {
      systemLine('Error: ' + text, 'error');
    }
    if (code === 'bad_name') {
      // The server closes the socket next; reconnecting with the same name would fail again.
      state.stopped = true;
      openNameModal(false, 'The server did not accept that name: ' + text);
    } else if (code === 'bad_room') {
      state.stopped = true;
    }
  }

  // ---------- message list ----------

  function validMessage(m) {
    return m && Number.isInteger(m.seq) && m.seq > 0;
  }

  // Returns true when a new element was placed.
  function addMessage(m, live) {
    if (!validMessage(m)) return false;
    if (m.seq > state.highestSeq) state.highestSeq = m.seq;
    if (state.bySeq.has(m.seq)) return false;
    const p = m.id != null ? state.pending.get(m.id) : undefined;
    let node;
    if (p) {
      state.pending.delete(m.id);
      node = p.el;
      confirmElement(node, m);
    } else {
      node = buildMessage(m);
      if (live && document.hidden && m.name !== state.name) bumpUnread();
    }
    placeConfirmed(node, m.seq);
    if (typeof m.name === 'string') clearTyper(m.name);
    return true;
  }

  function buildMessage(m, pending) {
    const name = typeof m.name === 'string' ? m.name : '?';
    const node = el('div', 'msg');
    node.dataset.seq = pending ? '' : String(m.seq);
    node.dataset.id = m.id != null ? String(m.id) : '';
    if (name === state.name) node.classList.add('own');
    if (pending) node.classList.add('pending');

    const body = el('div', 'msg-body');
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-name', name), el('time', 'msg-time'), el('span', 'msg-state', pending ? 'sending…' : ''));
    const text = el('div', 'msg-text', typeof m.text === 'string' ? m.text : '');
    text.dir = 'auto';
    body.append(head, text);
    node.append(avatar(name), body);
    setTime(node, pending ? null : m.ts);
    return node;
  }

  function setTime(node, ts) {
    const t = node.querySelector('.msg-time');
    if (Number.isFinite(ts)) {
      t.dataset.ts = String(ts);
      t.textContent = formatTime(ts);
      t.dateTime = new Date(ts).toISOString();
      t.title = new Date(ts).toLocaleString();
    } else {
      t.dataset.ts = '';
      t.textContent = '';
    }
  }

  function confirmElement(node, m) {
    node.classList.remove('pending', 'failed');
    node.dataset.seq = String(m.seq);
    node.querySelector('.msg-state').textContent = '';
    const retry = node.querySelector('.msg-retry');
    if (retry) retry.remove();
    setTime(node, m.ts);
  }

  // Order key of a list element: seq for confirmed messages, highest-seq-at-creation
  // + 0.5 for system lines (so they stay where they happened), none for pending ones.
  function orderKey(node) {
    const k = node.dataset.key;
    return k ? Number(k) : null;
  }

  function placeConfirmed(node, seq) {
    node.dataset.key = String(seq);
    state.bySeq.set(seq, node);
    if (!state.lowestSeq || seq < state.lowestSeq) state.lowestSeq = seq;
    // Walk back from the end (where new messages almost always go), past pending
    // sends, which stay at the bottom until confirmed.
    let prev = ui.messages.lastElementChild;
    while (prev && (prev === node || orderKey(prev) === null || orderKey(prev) > seq)) prev = prev.previousElementSibling;
    if (prev) prev.after(node);
    else ui.messages.prepend(node);
  }

  function prependOlder(msgs) {
    const frag = document.createDocumentFragment();
    for (const m of msgs) {
      if (!validMessage(m) || state.bySeq.has(m.seq)) continue;
      const node = buildMessage(m);
      node.dataset.key = String(m.seq);
      state.bySeq.set(m.seq, node);
      if (!state.lowestSeq || m.seq < state.lowestSeq) state.lowestSeq = m.seq;
      if (m.seq > state.highestSeq) state.highestSeq = m.seq;
      frag.append(node);
    }
    // Keep the viewport on what the user was reading.
    const sc = ui.scroller;
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    ui.messages.prepend(frag);
    sc.scrollTop = sc.scrollHeight - fromBottom;
    updateEmpty();
  }

  function systemLine(text, kind) {
    const stick = nearBottom();
    const node = el('div', 'system' + (kind ? ' ' + kind : ''), text);
    node.dataset.key = String(state.highestSeq + 0.5);
    ui.messages.append(node);
    updateEmpty();
    if (stick) scrollToBottom();
  }

  function updateEmpty() {
    ui.empty.hidden = ui.messages.firstElementChild !== null;
  }

  function updateOlderButton() {
    const btn = ui.loadOlder;
    btn.hidden = !state.hasOlder || state.bySeq.size === 0;
    btn.disabled = state.loadingOlder || !isOpen();
    btn.textContent = state.loadingOlder ? 'Loading…' : 'Load older messages';
  }

  function loadOlder() {
    if (state.loadingOlder || !state.lowestSeq) return;
    if (sendFrame({ type: 'history', before: state.lowestSeq, limit: PAGE_SIZE })) {
      state.loadingOlder = true;
      updateOlderButton();
    }
  }

  function nearBottom() {
    const sc = ui.scroller;
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }

  // Dates switch from "HH:MM:SS" to "date HH:MM:SS" at midnight.
  function refreshTimesIfNewDay() {
    const today = new Date().toDateString();
    if (today === state.today) return;
    state.today = today;
    for (const t of ui.messages.querySelectorAll('.msg-time')) {
      const ts = Number(t.dataset.ts);
      if (t.dataset.ts && Number.isFinite(ts)) t.textContent = formatTime(ts);
    }
  }

  // ---------- sending ----------

  function showComposerError(text) {
    ui.composerError.textContent = text;
    ui.composerError.hidden = !text;
  }

  function updateByteCount() {
    const n = byteLength(ui.input.value.trim());
    const max = state.maxMessageBytes;
    const show = n > max * 0.8;
    ui.byteCount.hidden = !show;
    if (show) ui.byteCount.textContent = n + ' / ' + max;
    ui.byteCount.classList.toggle('over', n > max);
  }

  function submitMessage() {
    // The server trims too; sending the trimmed text keeps the byte check honest.
    const text = ui.input.value.trim();
    if (!text) {
      ui.input.value = '';
      autosize();
      return;
    }
    const bytes = byteLength(text);
    if (bytes > state.maxMessageBytes) {
      showComposerError('Message too long: ' + bytes + ' bytes, the limit is ' + state.maxMessageBytes + '. It was not sent.');
      return;
    }
    const id = state.idPrefix + '-' + (++state.idCounter);
    // JSON escaping can blow a legal text past the frame limit, and the router would
    // close the socket on every resend of it.
    if (byteLength(JSON.stringify({ type: 'send', id, text })) > FRAME_LIMIT) {
      showComposerError('Message too long once encoded (too many special characters). It was not sent.');
      return;
    }
    showComposerError('');
    const node = buildMessage({ id, name: state.name, text }, true);
    ui.messages.append(node);
    const p = { id, text, el: node, sentOn: 0 };
    state.pending.set(id, p);
    ui.input.value = '';
    autosize();
    updateByteCount();
    updateEmpty();
    scrollToBottom();
    trySend(p);
  }

  // Unconfirmed sends stay in `pending` and go out again on every new socket,
  // with the same id, so the server can drop duplicates.
  function trySend(p) {
    if (p.sentOn === state.conn) return;
    if (sendFrame({ type: 'send', id: p.id, text: p.text })) p.sentOn = state.conn;
  }

  function resendPending() {
    for (const p of state.pending.values()) trySend(p);
  }

  function markFailed(p, code, text) {
    state.pending.delete(p.id);
    const node = p.el;
    node.classList.remove('pending');
    node.classList.add('failed');
    node.querySelector('.msg-state').textContent = 'not sent: ' + text;
    if (!FINAL_ERRORS.has(code) && !node.querySelector('.msg-retry')) {
      const retry = el('button', 'msg-retry', 'retry');
      retry.type = 'button';
      retry.addEventListener('click', () => {
        // A fresh id: the failed one was never stored, but a new one cannot be confused with it.
        const id = state.idPrefix + '-' + (++state.idCounter);
        retry.remove();
        node.classList.remove('failed');
        node.classList.add('pending');
        node.dataset.id = id;
        node.querySelector('.msg-state').textContent = 'sending…';
        ui.messages.append(node);
        const np = { id, text: p.text, el: node, sentOn: 0 };
        state.pending.set(id, np);
        scrollToBottom();
        trySend(np);
      });
      node.querySelector('.msg-head').append(retry);
    }
  }

  function maybeSendTyping() {
    const now = Date.now();
    if (!ui.input.value.trim() || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
    if (sendFrame({ type: 'typing' })) state.lastTypingSent = now;
  }

  function autosize() {
    const ta = ui.input;
    ta.style.height = 'auto';
    ta.style.height = Math.min(ta.scrollHeight + 2, 200) + 'px';
  }

  // ---------- presence & typing ----------

  // The room sends the whole list on connect, then who joined or left.
  // The list repeats a name per open tab; each person is shown once, with a
  // count.
  function setPresence(users) {
    if (!Array.isArray(users)) return;
    state.presence = new Map();
    for (const u of users) if (typeof u === 'string') state.presence.set(u, (state.presence.get(u) || 0) + 1);
    renderPresence();
  }

  function countPresence(name, delta) {
    const n = (state.presence.get(name) || 0) + delta;
    if (n > 0) state.presence.set(name, n); else state.presence.delete(name);
    renderPresence();
  }

  function renderPresence() {
    const counts = state.presence;
    const items = [];
    for (const [name, n] of counts) {
      const li = el('li', name === state.name ? 'me' : '');
      li.append(avatar(name), el('span', 'presence-name', name));
      if (name === state.name) li.append(el('span', 'tag', 'you'));
      if (n > 1) li.append(el('span', 'tag', '×' + n));
      items.push(li);
    }
    ui.presence.replaceChildren(...items);
    ui.presenceCount.textContent = String(counts.size);
  }

  function onTyping(name) {
    if (typeof name !== 'string' || name === state.name) return;
    clearTimeout(state.typers.get(name));
    state.typers.set(name, setTimeout(() => clearTyper(name), TYPING_SHOW_FOR));
    renderTyping();
  }

  function clearTyper(name) {
    if (!state.typers.has(name)) return;
    clearTimeout(state.typers.get(name));
    state.typers.delete(name);
    renderTyping();
  }

  function clearTypers() {
    for (const t of state.typers.values()) clearTimeout(t);
    state.typers.clear();
    renderTyping();
  }

  function renderTyping() {
    const names = Array.from(state.typers.keys());
    let text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = 'Several people are typing…';
    ui.typing.textContent = text;
  }

  // ---------- unread counter in the tab title ----------

  function bumpUnread() {
    state.unread++;
    document.title = '(' + state.unread + ') ' + state.room + ' · hellochat';
  }

  function clearUnread() {
    if (!state.unread) return;
    state.unread = 0;
    document.title = state.room + ' · hellochat';
  }

  // ---------- wiring ----------

  function wire() {
    ui.composer.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitMessage();
      ui.input.focus();
    });
    ui.input.addEventListener('keydown', (ev) => {
      // isComposing: Enter that confirms an IME composition must not send.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submitMessage();
      }
    });
    // Synthetic key events (DevTools protocol, as used by automated tests) still
    // deliver the newline as a separate keypress after a cancelled keydown.
    ui.input.addEventListener('keypress', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) ev.preventDefault();
    });
    ui.input.addEventListener('input', () => {
      autosize();
      updateByteCount();
      if (!ui.composerError.hidden) showComposerError('');
      maybeSendTyping();
    });

    ui.loadOlder.addEventListener('click', loadOlder);
    ui.copyLink.addEventListener('click', copyLink);
    ui.changeName.addEventListener('click', () => openNameModal(false));
    ui.nameForm.addEventListener('submit', onNameSubmit);
    ui.nameCancel.addEventListener('click', () => { if (state.name) closeNameModal(); });
    ui.nameModal.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && state.name && !ui.nameCancel.hidden) closeNameModal();
    });
    ui.nameInput.addEventListener('input', () => { ui.nameError.textContent = ''; });

    // Clicking the status while waiting to reconnect skips the wait.
    ui.status.addEventListener('click', () => {
      if (!state.ws && !state.stopped && state.name) reconnectNow();
    });

    ui.sidebarToggle.addEventListener('click', () => setSidebar(!document.body.classList.contains('show-sidebar')));
    // On small screens the sidebar is an overlay: a click anywhere else closes it.
    document.addEventListener('click', (ev) => {
      if (document.body.classList.contains('show-sidebar') &&
          !ui.sidebar.contains(ev.target) && !ui.sidebarToggle.contains(ev.target)) setSidebar(false);
    });

    ui.qr.addEventListener('error', () => ui.qr.classList.add('broken'));
    ui.qr.addEventListener('load', () => ui.qr.classList.remove('broken'));

    window.addEventListener('online', () => {
      if (!state.ws && !state.stopped && state.name) reconnectNow();
    });
    window.addEventListener('offline', () => {
      if (!isOpen()) {
        clearTimeout(state.retryTimer);
        setStatus('offline', 'Offline (no network)');
      }
    });
    // A page leaving (or entering the back/forward cache) must not keep its socket:
    // it would linger in the room's presence list as a ghost tab.
    window.addEventListener('pagehide', () => {
      clearTimeout(state.retryTimer);
      const old = state.ws;
      if (old) {
        state.ws = null;
        state.welcomed = false;
        state.conn++;
        try { old.close(1000, 'page hidden'); } catch (e) { /* ignore */ }
      }
    });
    window.addEventListener('pageshow', (ev) => {
      if (ev.persisted && state.name && !state.stopped) reconnectNow();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) clearUnread(); });
    setInterval(refreshTimesIfNewDay, 60 * 1000);
  }

  function setSidebar(open) {
    document.body.classList.toggle('show-sidebar', open);
    ui.sidebarToggle.setAttribute('aria-expanded', String(open));
  }

  function init() {
    state.room = pickRoom();
    showRoom();
    wire();
    setStatus('offline', 'Not connected');
    updateEmpty();
    showName();

    const fromURL = validateName(new URLSearchParams(location.search).get('name'));
    const fromStore = validateName(storage('get'));
    if (!fromURL.error) state.name = fromURL.name; // for tests and bookmarks; not remembered
    else if (!fromStore.error) state.name = fromStore.name;

    if (state.name) {
      showName();
      connect();
      ui.input.focus();
    } else {
      openNameModal(true);
    }
  }

  init();
})();
