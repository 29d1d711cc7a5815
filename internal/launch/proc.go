package launch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// Proc is one process of the cluster.
type Proc struct {
	Name string
	net  Network
	bin  string
	args []string
	log  string
	// starts counts the processes started on this log: its StartMarker
	// lines tell one process's lines from the next one's.
	starts int
	cmd    *exec.Cmd
	exit   chan struct{} // closed when the current process has exited

	// Object nodes only: their gRPC, gossip and admin addresses, data
	// directory.
	grpcAddr, gossipAddr, adminAddr, data string
	// pki is the cluster's development PKI, which Status and Decommission
	// call the node with as an admin.
	pki string
}

// admin dials the node as an admin of the cluster.
func (p *Proc) admin() (*grpc.ClientConn, error) {
	s, err := security.Dev(p.pki, security.Identity{Role: security.RoleAdmin, ID: "admin"})
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(s.ClientCreds()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return p.net.DialContext(ctx, "tcp", addr)
		}))
}

// StartMarker begins the line Start writes to a process's log before each
// process it starts there: a restart (kill -9, wipe) appends to the same
// log, and the checks of the logs must tell the processes apart.
const StartMarker = "launch: starting "

// Start starts the process, appending its output to its log file after a
// StartMarker line.
func (p *Proc) Start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("launch: log for %s: %w", p.Name, err)
	}
	defer f.Close()
	p.starts++
	if _, err := fmt.Fprintf(f, "%s%s (process %d of this log) at %s\n", StartMarker, p.Name, p.starts,
		time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("launch: log for %s: %w", p.Name, err)
	}
	p.cmd = p.net.Command(p.Name, p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("launch: start %s: %w", p.Name, err)
	}
	exit := make(chan struct{})
	p.exit = exit
	cmd := p.cmd
	go func() {
		cmd.Wait()
		close(exit)
	}()
	return nil
}

// Pid is the running process's id (0 when not started).
func (p *Proc) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the running process.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(sig)
	}
}

// Kill9 kills the process with SIGKILL and waits until it is gone.
func (p *Proc) Kill9() {
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Exited reports whether the last started process has exited, and its
// exit status if so (-1 when a signal ended it).
func (p *Proc) Exited() (code int, exited bool) {
	if p.exit == nil {
		return 0, false
	}
	select {
	case <-p.exit:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// GRPCAddr is an object node's gRPC address ("" for the router).
func (p *Proc) GRPCAddr() string { return p.grpcAddr }

// AdminAddr is an object node's admin address (/metrics, /readyz).
func (p *Proc) AdminAddr() string { return p.adminAddr }

// GossipAddr is an object node's gossip address.
func (p *Proc) GossipAddr() string { return p.gossipAddr }

// DataDir is an object node's data directory ("" for the router).
func (p *Proc) DataDir() string { return p.data }

// LogPath is the file the process's output is appended to.
func (p *Proc) LogPath() string { return p.log }

// LogSize is the current length of the process's log, a mark to read what
// it logs from then on with LogSince.
func (p *Proc) LogSize() int64 {
	fi, err := os.Stat(p.log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince returns what the process logged after mark (a LogSize).
func (p *Proc) LogSince(mark int64) string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// WipeData deletes an object node's data directory, as if its disk died.
// The node must be down.
func (p *Proc) WipeData() error {
	if _, exited := p.Exited(); p.exit != nil && !exited {
		return fmt.Errorf("launch: wipe %s: it is running", p.Name)
	}
	if p.data == "" {
		return fmt.Errorf("launch: wipe %s: not an object node", p.Name)
	}
	return os.RemoveAll(p.data)
}

// Status asks an object node for its status over gRPC.
func (p *Proc) Status(ctx context.Context) (*pb.StatusResponse, error) {
	conn, err := p.admin()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return pb.NewRoomsClient(conn).Status(ctx, &pb.StatusRequest{})
}

// Decommission asks an object node to move every replica off itself and
// stop (what `objectnode decommission` does). A node that has not joined
// its cluster yet answers Unavailable; Decommission retries that until ctx
// ends.
func (p *Proc) Decommission(ctx context.Context) (*pb.StatusResponse, error) {
	conn, err := p.admin()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for {
		st, err := pb.NewRoomsClient(conn).Decommission(ctx, &pb.DecommissionRequest{})
		if status.Code(err) != codes.Unavailable {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("launch: decommission %s: %w (last: %v)", p.Name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Forget asks this node, as the cluster's admin, to forget node for good
// (what `objectnode forget` does): it signs a tombstone of node's
// incarnation as this node knows it. A node gossip still shows alive is
// refused (FailedPrecondition): call again once it is seen down.
func (p *Proc) Forget(ctx context.Context, node string) (*pb.ForgetResponse, error) {
	s, err := security.Dev(p.pki, security.Identity{Role: security.RoleAdmin, ID: "admin"})
	if err != nil {
		return nil, err
	}
	conn, err := p.admin()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rooms := pb.NewRoomsClient(conn)
	st, err := rooms.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("launch: forget %s: status of %s: %w", node, p.Name, err)
	}
	i := slices.IndexFunc(st.Members, func(m *pb.MemberStatus) bool { return m.Id == node })
	if i < 0 {
		return nil, fmt.Errorf("launch: forget %s: %s does not know it", node, p.Name)
	}
	t, err := cluster.SignTombstone(s, cluster.Tombstone{Node: node, Replica: st.Members[i].Replica, At: time.Now().UnixNano()})
	if err != nil {
		return nil, err
	}
	req := &pb.ForgetRequest{NodeId: t.Node, Replica: t.Replica, AtUnixNano: t.At}
	if t.Proof != nil {
		req.Signed, req.Signature, req.Certificate = t.Proof.Meta, t.Proof.Sig, t.Proof.Cert
	}
	return rooms.Forget(ctx, req)
}

// Wait waits for the process to exit; false on timeout.
func (p *Proc) Wait(timeout time.Duration) bool {
	if p.exit == nil {
		return true
	}
	select {
	case <-p.exit:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Tail returns the last lines of the process's log.
func (p *Proc) Tail(lines int) string {
	b, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
