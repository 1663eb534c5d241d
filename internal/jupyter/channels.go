package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/internal/errdefs"
	"github.com/sandboxd/sandboxd/internal/run"
)

// conn is one WebSocket on a kernel's channels.
type conn struct {
	ws      *websocket.Conn
	binary  bool // the v1 protocol; else JSON text frames
	timeout time.Duration
	ctx     context.Context // ends with the connection
	cancel  context.CancelFunc
	// why, once the kernel closes the connection, is said in its close
	// frame by the handler.
	why      chan string
	shutOnce sync.Once
}

// send writes m, bounded by the write timeout; a client that does not
// take it in time is disconnected.
func (c *conn) send(m *message) {
	typ, b := websocket.MessageBinary, []byte(nil)
	if c.binary {
		b = encodeV1(m)
	} else {
		var err error
		if b, err = encodeJSON(m); err != nil {
			return
		}
		typ = websocket.MessageText
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.cancel()
	}
}

// shut asks the connection's handler to close it, saying why.
func (c *conn) shut(why string) {
	c.shutOnce.Do(func() { c.why <- why })
}

// handleChannels serves a kernel's channels over a WebSocket until the
// client goes, the kernel is shut down or the connection fails a ping.
// The request passed the API's checks (token, Host, Origin); the
// WebSocket library checks the Origin again.
func (g *Gateway) handleChannels(w http.ResponseWriter, r *http.Request) {
	k := g.lookup(w, r)
	if k == nil {
		return
	}
	g.mu.Lock()
	closed := g.closed
	if !closed {
		g.wg.Add(1)
	}
	g.mu.Unlock()
	if closed {
		writeError(w, fmt.Errorf("%w: the daemon is shutting down", errdefs.ErrUnavailable))
		return
	}
	defer g.wg.Done()
	// The server's read and write deadlines are for one request; on a
	// WebSocket each message has its own (send), and pings find a dead
	// peer.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{v1Protocol}})
	if err != nil {
		// Accept answered the request (a 4xx naming what is wrong).
		g.log.Warn("refused a kernel WebSocket", "kernel", k.id, "err", err)
		return
	}
	ws.SetReadLimit(g.cfg.MaxMessage)
	ctx, cancel := context.WithCancel(g.life)
	defer cancel()
	c := &conn{ws: ws, binary: ws.Subprotocol() == v1Protocol, timeout: g.cfg.WriteTimeout, ctx: ctx, cancel: cancel, why: make(chan string, 1)}
	if !k.attach(c) {
		_ = ws.Close(websocket.StatusNormalClosure, "the kernel was shut down")
		return
	}
	defer k.detach(c)
	read := make(chan error, 1)
	go func() { read <- g.readLoop(k, c) }()
	keep := time.NewTicker(g.cfg.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case err := <-read:
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
			default:
				if !errors.Is(err, context.Canceled) {
					g.log.Info("kernel WebSocket ended", "kernel", k.id, "err", err)
				}
			}
			_ = ws.CloseNow()
			return
		case why := <-c.why:
			_ = ws.Close(websocket.StatusNormalClosure, run.Clip(why, 120))
			<-read
			return
		case <-ctx.Done():
			// A send failed or the gateway closes.
			_ = ws.CloseNow()
			<-read
			return
		case <-keep.C:
			pctx, pcancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
			err := ws.Ping(pctx)
			pcancel()
			if err != nil {
				_ = ws.CloseNow()
				<-read
				return
			}
			k.touch()
		}
	}
}

// readLoop reads the client's messages and handles each until the
// connection ends. A message that is not a Jupyter message closes the
// connection with a close frame that says why.
func (g *Gateway) readLoop(k *kernel, c *conn) error {
	for {
		typ, b, release, err := readMessage(c.ctx, c.ws, g.reading)
		if errors.Is(err, errBudget) {
			_ = c.ws.Close(websocket.StatusTryAgainLater, run.Clip(err.Error(), 120))
			return err
		}
		if err != nil {
			return err
		}
		m, err := decodeFrame(typ, b)
		if err != nil {
			release()
			_ = c.ws.Close(websocket.StatusInvalidFramePayloadData, run.Clip(err.Error(), 120))
			return err
		}
		g.handle(k, c, m)
		// A queued cell holds its code past this, bounded by the
		// kernel's waiting bytes instead.
		release()
	}
}

// decodeFrame reads a message of either protocol: a binary frame is v1,
// a text frame JSON.
func decodeFrame(typ websocket.MessageType, b []byte) (*message, error) {
	if typ == websocket.MessageBinary {
		return decodeV1(b)
	}
	return decodeJSON(b)
}

// handle answers one message of a client.
func (g *Gateway) handle(k *kernel, c *conn, m *message) {
	switch m.hdr.MsgType {
	case "execute_request":
		k.enqueue(c, m)
	case "kernel_info_request":
		k.answer(c, m, "kernel_info_reply", k.info())
	case "complete_request":
		// No completion: an empty list where the cursor is.
		var req struct {
			CursorPos int `json:"cursor_pos"`
		}
		_ = json.Unmarshal(m.Content, &req)
		k.answer(c, m, "complete_reply", map[string]any{"status": "ok", "matches": []string{}, "cursor_start": req.CursorPos, "cursor_end": req.CursorPos, "metadata": map[string]any{}})
	case "inspect_request":
		k.answer(c, m, "inspect_reply", map[string]any{"status": "ok", "found": false, "data": map[string]any{}, "metadata": map[string]any{}})
	case "history_request":
		k.answer(c, m, "history_reply", map[string]any{"status": "ok", "history": []any{}})
	case "comm_info_request":
		k.answer(c, m, "comm_info_reply", map[string]any{"status": "ok", "comms": map[string]any{}})
	case "is_complete_request":
		// Without the language's parser at hand, "unknown": the client
		// decides (a console then runs the code as it is).
		k.answer(c, m, "is_complete_reply", map[string]any{"status": "unknown"})
	case "interrupt_request":
		k.interrupt()
		k.reply(c, m, "interrupt_reply", map[string]any{"status": "ok"})
	case "shutdown_request":
		g.shutdownRequest(k, c, m)
	case "comm_open":
		// No comm targets: a kernel closes a comm it cannot open.
		var req struct {
			CommID string `json:"comm_id"`
		}
		_ = json.Unmarshal(m.Content, &req)
		k.publish(m, "comm_close", map[string]any{"comm_id": req.CommID, "data": map[string]any{}})
	default:
		// input_reply (no input is ever asked for), comm_msg,
		// comm_close, debug_request and what later protocols add: a
		// kernel ignores what it does not handle.
		g.log.Debug("ignored a kernel message", "kernel", k.id, "msg_type", run.Clip(m.hdr.MsgType, run.MaxName))
	}
}

// shutdownRequest shuts the kernel down, or restarts it, as asked on the
// channels (clients usually use the REST endpoints instead).
func (g *Gateway) shutdownRequest(k *kernel, c *conn, m *message) {
	var req struct {
		Restart bool `json:"restart"`
	}
	_ = json.Unmarshal(m.Content, &req)
	if req.Restart {
		err := k.restart(c.ctx)
		content := map[string]any{"status": "ok", "restart": true}
		if err != nil {
			content = map[string]any{"status": "error", "restart": true, "ename": "RestartError", "evalue": err.Error(), "traceback": []string{err.Error()}}
		}
		k.reply(c, m, "shutdown_reply", content)
		return
	}
	k.reply(c, m, "shutdown_reply", map[string]any{"status": "ok", "restart": false})
	k.publishStatus(m, "dead", false)
	g.remove(k, "a shutdown_request")
}

// info is kernel_info_reply's content.
func (k *kernel) info() map[string]any {
	li := k.spec.info
	li.Version = k.session().Info().Version
	return map[string]any{
		"status": "ok", "protocol_version": protocolVersion,
		"implementation": "sandboxd", "implementation_version": k.g.cfg.Version,
		"language_info": li,
		"banner":        k.spec.display + ": every cell runs in a sandboxd session, a confined sandbox with its own workspace",
		"help_links":    []any{}, "debugger": false,
	}
}
