package api

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
)

// A web page the user visits can send requests to the daemon: a form or a
// "simple" fetch reaches 127.0.0.1 without a preflight, and after DNS
// rebinding the page's own name resolves to 127.0.0.1 and it reads the
// answers. These checks refuse what only a browser sends, before routing;
// curl, Go, node and Python clients send no Origin and no Sec-Fetch-*
// header and never meet them. RATIONALE.md ("The daemon and web pages")
// says why these checks and not a CSRF token.
//
// Each check returns nil or the error the request is refused with.
var browserChecks = []struct {
	name  string // what it guards against
	check func(s *Server, r *http.Request) error
}{
	{"DNS rebinding", (*Server).checkHost},
	{"cross-origin fetch", (*Server).checkFetchSite},
	{"cross-origin origin", (*Server).checkOrigin},
	{"form body", (*Server).checkContentType},
}

// refuseBrowser answers a request that fails a browser check and reports
// whether it did.
func (s *Server) refuseBrowser(w http.ResponseWriter, r *http.Request) bool {
	for _, c := range browserChecks {
		if err := c.check(s, r); err != nil {
			reason := "forbidden"
			if errdefs.Is(err, errdefs.ErrUnsupportedMediaType) {
				reason = "unsupported_media_type"
			}
			s.metrics.Rejected(reason)
			s.log.Warn("refused a browser's request", "check", c.name, "method", r.Method, "path", r.URL.Path,
				"host", run.Clip(r.Host, run.MaxName), "origin", run.Clip(r.Header.Get("Origin"), run.MaxName),
				"sec_fetch_site", run.Clip(r.Header.Get("Sec-Fetch-Site"), run.MaxName))
			writeError(w, err)
			return true
		}
	}
	return false
}

// checkHost: without a token, only loopback names are served. A page on
// evil.example whose name is rebound to 127.0.0.1 sends "Host:
// evil.example"; it cannot make the browser send a loopback Host for its
// own origin.
func (s *Server) checkHost(r *http.Request) error {
	if s.cfg.AllowAnyHost || len(s.cfg.Tokens) > 0 || loopbackHost(r.Host) {
		return nil
	}
	if s.cfg.Addr != "" && strings.EqualFold(r.Host, s.cfg.Addr) {
		return nil
	}
	return fmt.Errorf("%w: Host %s is not a loopback name: a token-less daemon serves only loopback hosts (DNS rebinding); give --token-file to serve other names", errdefs.ErrForbidden, run.Quote(r.Host, run.MaxName))
}

// loopbackHost reports whether a Host header (with or without a port)
// names the loopback: localhost, 127.x.y.z or [::1].
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		// A bare IPv6 address is not a valid Host; neither is "x:".
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFetchSite: a browser says where a request comes from in
// Sec-Fetch-Site; only the daemon's own origin ("same-origin") and the
// user's typing ("none") pass. "same-site" is refused: a dev server on
// another port of localhost is the same site.
func (s *Server) checkFetchSite(r *http.Request) error {
	site, ok := r.Header["Sec-Fetch-Site"]
	if !ok {
		return nil
	}
	if v := strings.ToLower(strings.TrimSpace(strings.Join(site, ","))); v == "same-origin" || v == "none" {
		return nil
	}
	return fmt.Errorf("%w: Sec-Fetch-Site %s: the daemon refuses cross-origin requests from web pages; send the request from a program, not a browser", errdefs.ErrForbidden, run.Quote(strings.Join(site, ","), run.MaxName))
}

// checkOrigin: an Origin whose host:port is not the request's Host is a
// page of another origin ("null" is a sandboxed frame or a file).
func (s *Server) checkOrigin(r *http.Request) error {
	origin, ok := r.Header["Origin"]
	if !ok {
		return nil
	}
	o := strings.Join(origin, ",")
	if u, err := url.Parse(o); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) && (u.Scheme == "http" || u.Scheme == "https") {
		return nil
	}
	return fmt.Errorf("%w: Origin %s is not the daemon's own (Host %s): the daemon refuses cross-origin requests from web pages; send the request from a program, not a browser", errdefs.ErrForbidden, run.Quote(o, run.MaxName), run.Quote(r.Host, run.MaxName))
}

// checkContentType: a POST under /v1/ is JSON. A web page can send
// text/plain and multipart/form-data without a preflight, so those are
// refused; application/x-www-form-urlencoded, which a page can send too,
// stays because it is what `curl -d` sends (a page's form carries Origin
// and is refused above). Piston's /api/v2/execute is not under /v1: its
// npm client sends text/plain.
func (s *Server) checkContentType(r *http.Request) error {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1/") {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	essence, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(essence)) {
	case "text/plain", "multipart/form-data":
		return fmt.Errorf("%w: Content-Type %s: %s takes a JSON body; send Content-Type: application/json", errdefs.ErrUnsupportedMediaType, run.Quote(ct, run.MaxName), run.Clip(r.URL.Path, run.MaxName))
	}
	return nil
}
