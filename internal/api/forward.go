package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/session"
)

// Forwarding between replicas. Several replicas of sandboxd behind one
// plain Service (Kubernetes, or any load balancer) each hold their own
// sessions, and a session's id names its replica. A request for a session
// of another replica is proxied to that replica, whose address is made
// from its name by a template ("http://{replica}.sandboxd-headless:8080"),
// so any replica the Service picks answers for every session. RATIONALE.md
// ("Sessions across replicas") says why this and not a proxy in front.
//
// Rules:
//   - only authenticated requests are forwarded (a request without the
//     token is refused here, and never reaches a peer);
//   - the peer's address is made only from a name session.ReplicaOf
//     accepted, a DNS label: a client cannot steer it to another host;
//   - a forwarded request carries ForwardedHeader and is never forwarded
//     again, so a disagreement about names cannot make a loop;
//   - the answer flows back as it comes (NDJSON cells stream), and a
//     client that goes away cancels the peer's request (its cell is
//     interrupted, as on the peer itself);
//   - a peer that cannot be reached is a clear error naming the replica:
//     404 when it is gone (its name does not resolve, or nothing listens
//     there: its sessions ended with it), 503 when it did not answer.

// ForwardedHeader marks a request one replica forwarded to another; its
// value is the forwarding replica's name. A request carrying it is served
// where it lands, never forwarded.
const ForwardedHeader = "Sandboxd-Forwarded-By"

// replicaPlaceholder is what a peer template's host holds in place of a
// replica's name.
const replicaPlaceholder = "{replica}"

// peerDialTimeout bounds connecting to a peer: peers are on one network.
const peerDialTimeout = 5 * time.Second

// Forwarder proxies session requests to the replica holding the session.
// Create it with NewForwarder; Close it at shutdown.
type Forwarder struct {
	template  string
	transport *http.Transport
	log       *slog.Logger
}

// CheckPeerTemplate says what is wrong with a peer URL template, or nil:
// an http or https URL whose host holds "{replica}", with no user, path,
// query or fragment ("http://{replica}.sandboxd-headless:8080").
func CheckPeerTemplate(tmpl string) error {
	if !strings.Contains(tmpl, replicaPlaceholder) {
		return fmt.Errorf("peer URL template %q: it has no %s to put a replica's name in", tmpl, replicaPlaceholder)
	}
	const marker = "sandboxd-replica-name"
	u, err := url.Parse(strings.ReplaceAll(tmpl, replicaPlaceholder, marker))
	switch {
	case err != nil:
		return fmt.Errorf("peer URL template %q: %w", tmpl, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("peer URL template %q: the scheme must be http or https", tmpl)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || !strings.Contains(u.Hostname(), marker):
		return fmt.Errorf("peer URL template %q: want a scheme, a host holding %s and a port, nothing else, such as http://%s.sandboxd-headless:8080", tmpl, replicaPlaceholder, replicaPlaceholder)
	}
	return nil
}

// NewForwarder returns a Forwarder to the peers named by tmpl (checked
// with CheckPeerTemplate). A nil transport takes one made for peers: no
// proxy from the environment, a dial timeout, no wait limit on a
// response's header (a cell answers when it ends), no compression.
func NewForwarder(tmpl string, transport *http.Transport, log *slog.Logger) (*Forwarder, error) {
	if err := CheckPeerTemplate(tmpl); err != nil {
		return nil, err
	}
	if transport == nil {
		transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: peerDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{template: strings.TrimSuffix(tmpl, "/"), transport: transport, log: log}, nil
}

// Close drops the idle connections to peers.
func (f *Forwarder) Close() { f.transport.CloseIdleConnections() }

// peerURL is the base URL of replica (a name session.ReplicaOf gave).
func (f *Forwarder) peerURL(replica string) (*url.URL, error) {
	return url.Parse(strings.ReplaceAll(f.template, replicaPlaceholder, replica))
}

// forward serves r by proxying it to the replica holding its session when
// that is another one, and reports whether it did (or refused it).
func (s *Server) forward(w http.ResponseWriter, r *http.Request) bool {
	f := s.cfg.Forward
	if f == nil || s.cfg.Sessions == nil || r.Header.Get(ForwardedHeader) != "" {
		return false
	}
	id := sessionIDOf(r)
	replica := session.ReplicaOf(id)
	here := s.cfg.Sessions.Replica()
	if replica == "" || replica == here {
		return false
	}
	if !s.authorized(w, r) {
		return true
	}
	target, err := f.peerURL(replica)
	if err != nil {
		writeError(w, fmt.Errorf("%w: the address of replica %q: %w", errdefs.ErrInternal, replica, err))
		return true
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(ForwardedHeader, here)
		},
		Transport: f.transport,
		ModifyResponse: func(*http.Response) error {
			s.metrics.Forwarded("answered")
			return nil
		},
		// Each write goes out at once: a streamed cell's events are
		// the client's as soon as the peer sends them.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			err = peerError(id, replica, target, err)
			if errdefs.Is(err, errdefs.ErrNotFound) {
				s.metrics.Forwarded("gone")
			} else {
				s.metrics.Forwarded("unreachable")
			}
			if r.Context().Err() == nil {
				s.log.Warn("forward", "session", id, "replica", replica, "err", err)
			}
			w.Header().Set(ReplicaHeader, replica)
			writeError(w, err)
		},
	}
	proxy.ServeHTTP(w, r)
	return true
}

// sessionIDOf is the {id} of a path under /v1/sessions/{id}, or "".
func sessionIDOf(r *http.Request) string {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), sessionsPath+"/")
	if !ok {
		return ""
	}
	seg, _, _ := strings.Cut(rest, "/")
	id, err := url.PathUnescape(seg)
	if err != nil {
		return ""
	}
	return id
}

// peerError says why replica could not serve session id: gone (its name
// no longer resolves, or nothing listens at its address: a replica that
// stops ends its sessions) or not answering.
func peerError(id, replica string, target *url.URL, err error) error {
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: the client went away while replica %q served session %q", errdefs.ErrUnavailable, replica, id)
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Errorf("%w: session %q lived on replica %q, which is gone (%s does not resolve: the replica was removed, and its sessions ended with it); create a new session", session.ErrNotFound, id, replica, target.Host)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: session %q lived on replica %q, which is gone (nothing listens at %s: the replica stopped, and its sessions ended with it); create a new session", session.ErrNotFound, id, replica, target.Host)
	}
	return fmt.Errorf("%w: session %q lives on replica %q, which did not answer at %s: %w; try again", errdefs.ErrUnavailable, id, replica, target.Host, err)
}
