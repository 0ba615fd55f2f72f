package web_test

import (
	"context"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/sagewai/observatory/protocol"
)

// TestWSNegotiatesVersion: a client offering observatory.v2 speaks it,
// whatever else it offers and in whatever order; one offering only v1
// keeps v1; and the hub learns which one the connection speaks, since it
// decides the diffs the connection gets.
func TestWSNegotiatesVersion(t *testing.T) {
	v1, v2 := protocol.Subprotocol, protocol.SubprotocolV2
	e := newEnv(t, nil)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{v1}, v1},
		{[]string{v2}, v2},
		{[]string{v1, v2}, v2},
		{[]string{v2, v1}, v2},
		{[]string{"observatory.v9", v1}, v1},
	} {
		t.Run(strings.Join(tc.offer, ","), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), hangBound)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/ws", &websocket.DialOptions{
				Subprotocols: tc.offer, HTTPHeader: bearer(e.adminToken(t)),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if got := c.Subprotocol(); got != tc.want {
				t.Fatalf("negotiated %q, want %q", got, tc.want)
			}
			send(t, c, subscribeFrame("*"))
			if s := e.hub.nextSub(t); s.req.Protocol != tc.want {
				t.Errorf("the hub was told %q, want %q", s.req.Protocol, tc.want)
			}
			if h := head(t, mustRead(t, c)); h.Op != protocol.OpSnapshot {
				t.Errorf("first frame %+v, want a snapshot", h)
			}
		})
	}
}
