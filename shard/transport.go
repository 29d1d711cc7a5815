package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"
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
	// MaxRaftMessage bounds one gRPC message between nodes: a batch of Raft
	// messages, whose entries Raft bounds to about 1 MiB per message.
	// Snapshots travel in chunks on their own streams.
	MaxRaftMessage = 64 << 20
)

// outbound is how a Host's Raft batches leave it: the gRPC transport in a
// node; in a simulation, a network the test delivers itself.
type outbound interface {
	// send queues one batch for a peer; it must not block the loop.
	send(to string, envs []*pb.RaftEnvelope, removals []*pb.Removal)
	// client is a Replication client for a peer, for snapshot streams.
	client(to string) (pb.ReplicationClient, error)
	close()
}

// snapshotStarter streams whole shards to replicas that need them
// (snapshotSender in a node) and reports each outcome to the loop.
type snapshotStarter interface {
	// start begins sending g's shard for Raft's snapshot message m; it
	// runs on the loop.
	start(g *group, m *raftpb.Message)
	close()
}

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
	queue chan *pb.RaftBatch
	conn  *grpc.ClientConn
	stop  chan struct{}
	done  chan struct{}
}

func newTransport(h *Host) *transport {
	return &transport{h: h, peers: map[string]*peer{}}
}

// send queues one batch for a peer, never blocking the Raft loop.
func (t *transport) send(to string, envs []*pb.RaftEnvelope, removals []*pb.Removal) {
	p, err := t.peer(to)
	if err != nil {
		return
	}
	select {
	case p.queue <- &pb.RaftBatch{FromNode: t.h.cfg.NodeID, Messages: envs, Removals: removals}:
	default:
		t.h.report(t.h.unreachable, to)
	}
}

// client is a Replication client for a peer, for snapshot streams.
func (t *transport) client(to string) (pb.ReplicationClient, error) {
	p, err := t.peer(to)
	if err != nil {
		return nil, err
	}
	return pb.NewReplicationClient(p.conn), nil
}

// peer returns the sender for a peer, starting one (or a new one when the
// peer moved to another address).
func (t *transport) peer(to string) (*peer, error) {
	meta, ok := t.h.cfg.Members.Placement().Node(to)
	if !ok || meta.GRPC == "" {
		return nil, fmt.Errorf("no address known for %s", to)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[to]; p != nil && p.addr == meta.GRPC {
		return p, nil
	} else if p != nil {
		close(p.stop) // the peer restarted on a new address
	}
	creds := t.h.cfg.Creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(meta.GRPC,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxRaftMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Second, Timeout: time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("raft transport to %s: %w", to, err)
	}
	p := &peer{id: to, addr: meta.GRPC, conn: conn, queue: make(chan *pb.RaftBatch, PeerQueue),
		stop: make(chan struct{}), done: make(chan struct{})}
	t.peers[to] = p
	go p.run(t.h)
	return p, nil
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
	defer p.conn.Close()
	client := pb.NewReplicationClient(p.conn)
	backoff := minRedial
	for {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := client.Raft(ctx)
		if err == nil {
			var sent bool
			if sent, err = p.pump(stream, h); sent {
				// The stream worked: this is a new failure, and the redial
				// that finds the peer gone (connection refused) is what
				// tells its followers at once. A backoff grown by earlier
				// outages would delay that by up to a second.
				backoff = minRedial
			}
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
			case <-p.queue:
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

// minRedial is the first wait before redialing a peer after a failure.
const minRedial = 20 * time.Millisecond

// pump writes batches until the stream fails or the peer is stopped; sent
// reports whether any batch went through.
func (p *peer) pump(stream pb.Replication_RaftClient, h *Host) (sent bool, err error) {
	for {
		select {
		case b := <-p.queue:
			if err := stream.Send(b); err != nil {
				if errors.Is(err, io.EOF) {
					_, err = stream.CloseAndRecv()
				}
				return sent, err
			}
			sent = true
		case <-p.stop:
			stream.CloseSend()
			return sent, nil
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
	verify   Verifier
	refused  atomic.Uint64
	mu       sync.RWMutex
	host     *Host
	stop     chan struct{}
	stopOnce sync.Once
}

// Verifier checks that the caller of a replication stream is the node its
// messages say they are from; nil takes every caller at its word.
type Verifier func(ctx context.Context, fromNode string) error

// NewServer returns a server that drops messages until SetHost. A stream
// whose messages claim a sender verify refuses is ended with verify's
// error, and counted.
func NewServer(verify Verifier) *Server { return &Server{verify: verify, stop: make(chan struct{})} }

// Refused counts the streams ended because their sender did not check out.
func (s *Server) Refused() uint64 { return s.refused.Load() }

func (s *Server) check(ctx context.Context, from string) error {
	if s.verify == nil {
		return nil
	}
	if err := s.verify(ctx, from); err != nil {
		s.refused.Add(1)
		return err
	}
	return nil
}

// SetHost starts delivering to h.
func (s *Server) SetHost(h *Host) {
	s.mu.Lock()
	s.host = h
	s.mu.Unlock()
}

// Close ends every open stream, so the gRPC server can stop gracefully:
// peers' streams are long-lived and would otherwise hold it open.
func (s *Server) Close() { s.stopOnce.Do(func() { close(s.stop) }) }

// Snapshot receives one streamed shard snapshot.
func (s *Server) Snapshot(stream pb.Replication_SnapshotServer) error {
	s.mu.RLock()
	h := s.host
	s.mu.RUnlock()
	if h == nil {
		return errors.New("replication not started yet")
	}
	return h.receiveSnapshot(stream, s.check)
}

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
			if b.FromNode != from {
				if err := s.check(stream.Context(), b.FromNode); err != nil {
					errc <- err
					return
				}
				from = b.FromNode
			}
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
