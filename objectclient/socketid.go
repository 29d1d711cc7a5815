package objectclient

import (
	"fmt"
	"strconv"
	"strings"

	"hellochat/durable"
)

// A router names each WebSocket it hands to an object
// "<router id>~<instance>.<n>": its gateway id (the router's id and a
// random instance, fresh at each start) and a counter. The node that runs
// the object sends what the object sends to that socket on the router's
// Gateway stream, found by the gateway id; and it takes a socket only
// from the router the id names.

// GatewayID is the gateway id of the router id in its instance.
func GatewayID(routerID, instance string) string { return routerID + "~" + instance }

// SocketID is the n-th socket's id of gateway.
func SocketID(gateway string, n uint64) string {
	return gateway + "." + strconv.FormatUint(n, 36)
}

// ParseGateway checks a gateway id and returns the router id in it.
func ParseGateway(gateway string) (routerID string, err error) {
	tilde := strings.LastIndexByte(gateway, '~')
	if tilde <= 0 || tilde == len(gateway)-1 || strings.ContainsRune(gateway[tilde:], '.') {
		return "", fmt.Errorf("gateway id %q is not <router id>~<instance>", cutID(gateway))
	}
	if len(gateway)+2 > durable.MaxSocketIDBytes {
		return "", fmt.Errorf("gateway id of %d bytes leaves no room for socket ids (at most %d)", len(gateway), durable.MaxSocketIDBytes-2)
	}
	return gateway[:tilde], nil
}

// ParseSocket checks a socket id and returns its gateway's id and the
// router id in it.
func ParseSocket(socket string) (gateway, routerID string, err error) {
	if len(socket) > durable.MaxSocketIDBytes {
		return "", "", fmt.Errorf("socket id of %d bytes, at most %d", len(socket), durable.MaxSocketIDBytes)
	}
	for _, c := range []byte(socket) {
		if c <= ' ' || c >= 0x7f {
			return "", "", fmt.Errorf("socket id holds byte %#x", c)
		}
	}
	dot := strings.LastIndexByte(socket, '.')
	if dot <= 0 || dot == len(socket)-1 {
		return "", "", fmt.Errorf("socket id %q is not <gateway>.<n>", cutID(socket))
	}
	gateway = socket[:dot]
	routerID, err = ParseGateway(gateway)
	return gateway, routerID, err
}

func cutID(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
