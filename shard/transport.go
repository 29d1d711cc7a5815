package shard

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "hellochat/proto/roompb"
)

const (
	// PeerQueue bounds the batches waiting for one peer. Raft tolerates lost
	// messages (it retries), so a full queue drops rather than blocks the loop.
	PeerQueue = 1024
	// MaxRaftMessage bounds one gRPC message between nodes; snapshots of a
	// shard travel in one message.
	MaxRaftMessage = 256 << 20
)

// transport sends Raft messages to peers: one goroutine and one client
// stream per peer, so everything for a peer in one round goes as one batch.
type transport struct {
	h     *Host
	mu    sync.Mutex
	peers map[string]*peer // by node id
}

type peer struct {
	id    string
	addr  string
	queue chan outBatch
	stop  chan struct{}
	done  chan struct{}
}

type outBatch struct {
	b     *pb.RaftBatch
	snaps []snapReport
}

func newTransport(h *Host) *transport {
	return &transport{h: h, peers: map[string]*peer{}}
}

// send queues one batch for a peer, never blocking the Raft loop.
func (t *transport) send(to string, envs []*pb.RaftEnvelope, snaps []snapReport) {
	meta, ok := t.h.cfg.Members.Placement().Node(to)
	if !ok || meta.GRPC == "" {
		return
	}
	var mine []snapReport
	for _, s := range snaps {
		if t.h.ids[s.to] == to {
			mine = append(mine, s)
		}
	}
	t.mu.Lock()
	p := t.peers[to]
	if p == nil || p.addr != meta.GRPC {
		if p != nil {
			close(p.stop) // the peer restarted on a new address
		}
		p = &peer{id: to, addr: meta.GRPC, queue: make(chan outBatch, PeerQueue), stop: make(chan struct{}), done: make(chan struct{})}
		t.peers[to] = p
		go p.run(t.h)
	}
	t.mu.Unlock()
	select {
	case p.queue <- outBatch{b: &pb.RaftBatch{FromNode: t.h.cfg.NodeID, Messages: envs}, snaps: mine}:
	default:
		t.h.report(t.h.unreachable, to)
		t.h.reportSnaps(mine, false)
	}
}

func (t *transport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.peers {
		close(p.stop)
		<-p.done
	}
	t.peers = map[string]*peer{}
}

// run keeps a stream open to the peer and writes its batches. While the peer
// is unreachable, batches are dropped and Raft is told, so it probes gently
// instead of piling up messages.
func (p *peer) run(h *Host) {
	defer close(p.done)
	conn, err := grpc.NewClient(p.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxRaftMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Second, Timeout: time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second}),
	)
	if err != nil {
		h.log.Error("raft transport", "peer", p.id, "err", err)
		return
	}
	defer conn.Close()
	client := pb.NewReplicationClient(conn)
	backoff := 20 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := client.Raft(ctx)
		if err == nil {
			err = p.pump(stream, h)
		}
		cancel()
		select {
		case <-p.stop:
			return
		default:
		}
		if refused(err) {
			h.report(h.peerDown, p.id)
		}
		h.report(h.unreachable, p.id)
		// Drop what queued up while the stream was down.
		timer := time.NewTimer(backoff)
	drain:
		for {
			select {
			case ob := <-p.queue:
				h.reportSnaps(ob.snaps, false)
			case <-timer.C:
				break drain
			case <-p.stop:
				timer.Stop()
				return
			}
		}
		backoff = min(backoff*2, time.Second)
	}
}

// pump writes batches until the stream fails or the peer is stopped.
func (p *peer) pump(stream pb.Replication_RaftClient, h *Host) error {
	for {
		select {
		case ob := <-p.queue:
			if err := stream.Send(ob.b); err != nil {
				h.reportSnaps(ob.snaps, false)
				if errors.Is(err, io.EOF) {
					_, err = stream.CloseAndRecv()
				}
				return err
			}
			h.reportSnaps(ob.snaps, true)
		case <-p.stop:
			stream.CloseSend()
			return nil
		}
	}
}

// refused tells a peer that is not running (connection refused: its process
// is gone) from one that is slow or cut off.
func refused(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		return strings.Contains(s.Message(), "connection refused")
	}
	return strings.Contains(err.Error(), "connection refused")
}

func (h *Host) report(ch chan string, id string) {
	select {
	case ch <- id:
	default: // the loop is already catching up on reports
	}
}

func (h *Host) reportSnaps(snaps []snapReport, ok bool) {
	for _, s := range snaps {
		s.ok = ok
		select {
		case h.snapDone <- s:
		default: // never block the loop (which also calls this); Raft re-sends
		}
	}
}

// Server is the receiving side of the transport, registered on the node's
// gRPC server.
type Server struct {
	pb.UnimplementedReplicationServer
	mu       sync.RWMutex
	host     *Host
	stop     chan struct{}
	stopOnce sync.Once
}

// NewServer returns a server that drops messages until SetHost.
func NewServer() *Server { return &Server{stop: make(chan struct{})} }

// SetHost starts delivering to h.
func (s *Server) SetHost(h *Host) {
	s.mu.Lock()
	s.host = h
	s.mu.Unlock()
}

// Close ends every open stream, so the gRPC server can stop gracefully:
// peers' streams are long-lived and would otherwise hold it open.
func (s *Server) Close() { s.stopOnce.Do(func() { close(s.stop) }) }

// Raft receives one peer's batches.
func (s *Server) Raft(stream pb.Replication_RaftServer) error {
	errc := make(chan error, 1)
	go func() {
		from := ""
		for {
			b, err := stream.Recv()
			s.mu.RLock()
			h := s.host
			s.mu.RUnlock()
			if err != nil {
				// A peer that closes its stream says goodbye (EOF); one
				// whose stream just breaks has most likely died (kill -9
				// closes its sockets at once). That is the earliest sign
				// of a dead leader, well before gossip's verdict.
				if !errors.Is(err, io.EOF) && from != "" && h != nil {
					h.report(h.peerDown, from)
				}
				errc <- nil
				return
			}
			from = b.FromNode
			if h == nil {
				continue
			}
			if err := h.Handle(b); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		if err != nil {
			return err
		}
		return stream.SendAndClose(&pb.RaftAck{})
	case <-s.stop:
		return nil
	case <-stream.Context().Done():
		return nil
	}
}
