package launch

import (
	"net"
	"strconv"
	"testing"
)

// Gossip ports come from outside the range the kernel gives outgoing
// connections, and both TCP and UDP can bind them.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	for i := 0; i < 20; i++ {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port >= lo && port <= hi {
			t.Fatalf("port %d is in the ephemeral range %d-%d", port, lo, hi)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		u.Close()
	}
}
