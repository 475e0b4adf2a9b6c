// Package embedded runs a NATS server with JetStream inside the process,
// so that one machine needs nothing else to run a moonbridge job queue
// (`moonbridge worker` without --nats). It is a package of its own so that
// programs that only talk to a NATS cluster do not link the server.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Dir is where JetStream stores its streams; required, created if
	// missing. Jobs, results and dead letters outlive the process there.
	Dir string
	// Addr is the address clients connect to, host:port. The default,
	// "127.0.0.1:4222", keeps the server to this machine; a port of 0
	// picks a free one. Listening beyond loopback is the caller's choice
	// (and then the server accepts anyone who can reach it: it has no
	// authentication).
	Addr string
}

// DefaultAddr is where an embedded server listens by default, and where
// `moonbridge submit` looks for one.
const DefaultAddr = "127.0.0.1:4222"

// Server is a running embedded NATS server.
type Server struct {
	s *server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded: a storage directory is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded: address %q: bad port", addr)
	}
	if host == "" {
		return nil, fmt.Errorf("embedded: address %q: name the host to listen on (127.0.0.1 for this machine only)", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// The server reports a taken port only in its log: try it first,
		// for a clear error now rather than a wait for a server that
		// never listens.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		ln.Close()
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "moonbridge",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.Dir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("embedded: the server did not start listening on %s", addr)
	}
	return &Server{s: s}, nil
}

// URL is the address to connect to, nats://host:port.
func (s *Server) URL() string { return s.s.ClientURL() }

// Shutdown stops the server (JetStream's files are flushed) and waits for
// it to finish.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}
