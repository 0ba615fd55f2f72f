package vmstack_test

import (
	"testing"

	"github.com/sagewai/observatory/vmstack"
)

func TestWithTimeFilter(t *testing.T) {
	tests := []struct{ in, want string }{
		{`*`, `_time:5m`},
		{``, `_time:5m`},
		{`event:="x"`, `_time:5m (event:="x")`},
		{`a or b`, `_time:5m (a or b)`},
		{`a | stats count() as n`, `_time:5m (a) | stats count() as n`},
		{`* | stats count()`, `_time:5m | stats count()`},
		{`msg:"a|b" | limit 3`, `_time:5m (msg:"a|b") | limit 3`},
		{`msg:"say \"|\"" x | limit 3`, `_time:5m (msg:"say \"|\"" x) | limit 3`},
		{`re:~'^(a|b)$'`, `_time:5m (re:~'^(a|b)$')`},
		{"f:`a|b` | uniq by (f)", "_time:5m (f:`a|b`) | uniq by (f)"},
		{`_time:1h event:="x"`, `_time:1h event:="x"`},
	}
	for _, tt := range tests {
		if got := vmstack.WithTimeFilter(tt.in, "5m"); got != tt.want {
			t.Errorf("WithTimeFilter(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
