//go:build !linux

package router

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not offered: a
// dead browser the router writes to is then found when its send queue
// fills, or by the kernel's retransmission limit.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
