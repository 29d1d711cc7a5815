package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"

	"hellochat/cluster"
	"hellochat/internal/flagenv"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// forgetTimeout bounds the two calls `objectnode forget` makes.
const forgetTimeout = 10 * time.Second

// forget is `objectnode forget HOST:PORT NODE`: it asks the live node at
// HOST:PORT for NODE's incarnation, signs a tombstone of it with the admin
// certificate and hands it over. Only the admin's key can make one, so the
// CLI signs it here rather than the node.
func forget(args []string) int {
	fs := flag.NewFlagSet("objectnode forget", flag.ExitOnError)
	sec := flagenv.SecurityFlags(fs)
	force := fs.Bool("force", false, "forget NODE even though gossip shows it alive (refused otherwise): every member then refuses it and it stops")
	replica := fs.String("replica", "", "the incarnation of NODE to forget (default: the one HOST:PORT knows)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: objectnode forget [flags] HOST:PORT NODE")
		fmt.Fprintln(fs.Output(), "  HOST:PORT: the --grpc-addr of any live node but NODE; NODE: the --id of a node gone for good.")
		fmt.Fprintln(fs.Output(), "  Its replicas move to the other nodes; the same id on a wiped disk may join again as a new node.")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, args); err != nil || fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	addr, node := fs.Arg(0), fs.Arg(1)
	settings, err := sec.Settings(security.RoleAdmin, "admin", slog.Default())
	if err != nil {
		fmt.Fprintf(os.Stderr, "forget: %v\n", err)
		return 2
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(settings.ClientCreds()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "forget: %v\n", err)
		return 1
	}
	defer conn.Close()
	rooms := pb.NewRoomsClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()

	if *replica == "" {
		st, err := rooms.Status(ctx, &pb.StatusRequest{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "forget: asking %s for %s's incarnation: %v\n", addr, node, err)
			return 1
		}
		found := false
		for _, m := range st.Members {
			if m.Id == node {
				*replica, found = m.Replica, true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "forget: %s does not know an object node %q\n", addr, node)
			return 1
		}
	}
	t, err := cluster.SignTombstone(settings, cluster.Tombstone{Node: node, Replica: *replica, At: time.Now().UnixNano()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "forget: %v\n", err)
		return 1
	}
	req := &pb.ForgetRequest{NodeId: t.Node, Replica: t.Replica, AtUnixNano: t.At, Force: *force}
	if t.Proof != nil {
		req.Signed, req.Signature, req.Certificate = t.Proof.Meta, t.Proof.Sig, t.Proof.Cert
	}
	resp, err := rooms.Forget(ctx, req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "forget %s through %s: %v\n", node, addr, err)
		return 1
	}
	if resp.Already {
		fmt.Printf("%s (incarnation %q) was forgotten already\n", resp.NodeId, resp.Replica)
		return 0
	}
	if *force {
		fmt.Fprintln(os.Stderr, "WARNING: forced: the node may still be running; every member now refuses it")
	}
	fmt.Printf("forgot %s (incarnation %q): the ring keeps %d object nodes, and its replicas move to them\n",
		resp.NodeId, resp.Replica, resp.RingNodes)
	return 0
}
