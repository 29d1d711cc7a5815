// Command router runs the HTTP/WebSocket edge: it serves the chat page and
// the built-in apps' Workers (the chat's at /ws), and holds the browsers'
// sockets their objects accept.
package main

import (
	"flag"
	"os"

	"hellochat/apps/builtin"
	"hellochat/apps/chat"
	"hellochat/internal/flagenv"
	"hellochat/router"
	"hellochat/security"
)

func main() {
	cfg := router.DefaultConfig()
	appOpts := builtin.DefaultOptions()
	fs := flag.NewFlagSet("router", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "router id, unique in the cluster")
	fs.StringVar(&cfg.HTTPListen, "http-addr", cfg.HTTPListen, "host:port to serve browsers (page and WebSocket)")
	fs.StringVar(&cfg.HTTPAdvertise, "http-advertise", "", "host:port browsers reach, if not --http-addr")
	fs.Float64Var(&appOpts.Chat.SendRate, "send-rate", appOpts.Chat.SendRate, "chat messages per second one browser may send (0: unlimited)")
	fs.IntVar(&appOpts.Chat.SendBurst, "send-burst", appOpts.Chat.SendBurst, "chat messages one browser may send at once above --send-rate")
	fs.Float64Var(&cfg.FrameRate, "frame-rate", cfg.FrameRate, "frames of any type one browser may send per second (0: unlimited); past it frames are dropped, and a flood disconnects")
	fs.IntVar(&cfg.FrameBurst, "frame-burst", cfg.FrameBurst, "frames one browser may send at once above --frame-rate")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "browsers this router serves at once (0: unlimited); more are refused with 503")
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", cfg.MaxConnsPerAddr, "browsers from one client address at once (0: unlimited; raise it behind a proxy that hides addresses); more are refused with 429")
	fs.Int64Var(&cfg.QueuedBytesBudget, "queued-bytes-budget", cfg.QueuedBytesBudget, "bytes waiting to be written to all browsers together (0: unlimited); a browser whose next frame does not fit is closed as a slow consumer (1008)")
	fs.Int64Var(&cfg.QueuedBytesPerAddr, "queued-bytes-per-addr", cfg.QueuedBytesPerAddr, "share of --queued-bytes-budget the browsers of one client address may hold (0: unlimited; raise it behind a proxy that hides addresses)")
	fs.DurationVar(&cfg.DeadBrowserAfter, "dead-browser-after", cfg.DeadBrowserAfter, "a browser gone without closing (machine off, network lost) leaves its room within this")
	fs.IntVar(&appOpts.Chat.SeedHistory, "seed-history", 0, "newest chat messages a seed-protocol browser gets on connect (0: the whole history, like the seed app)")
	fs.BoolVar(&cfg.AllowAnyOrigin, "allow-any-origin", false, "accept WebSockets from pages served by other origins")
	fs.StringVar(&cfg.AdminListen, "admin-addr", cfg.AdminListen, "host:port for the operator's endpoints (/api/cluster, detailed /healthz, --pprof); keep it on loopback or a private network; empty: none")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go pprof profiles under /debug/pprof/ on --admin-addr")
	member := flagenv.MemberFlags(fs, &cfg.GossipListen, &cfg.GossipAdvertise, &cfg.Timings)
	sec := flagenv.SecurityFlags(fs)
	setGC := flagenv.GCFlag(fs)
	flagenv.ParseOrExit(fs, "Runs one hellochat router.")
	setGC()
	cfg.Seeds = member.Seeds()
	cfg.Logger, cfg.LogOutput = member.Logger(cfg.ID)
	var err error
	if cfg.Security, err = sec.Settings(security.RoleRouter, cfg.ID, cfg.Logger); err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(2)
	}

	cfg.Apps, cfg.RoomClass = builtin.Registry(appOpts), chat.ClassName
	rt, err := router.Start(cfg)
	if err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	cfg.Logger.Info("open the chat", "url", "http://"+rt.Addr()+"/")
	if a := rt.AdminAddr(); a != "" {
		cfg.Logger.Info("cluster view for operators", "url", "http://"+a+"/api/cluster?format=text")
	}
	flagenv.ServeUntilSignal(cfg.Logger, rt.Shutdown)
}
