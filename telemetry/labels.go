package telemetry

import "strings"

// Label values that stand for many.
const (
	// ProjectGlobal is the project of what belongs to no one project.
	ProjectGlobal = "global"
	// labelOther replaces label values past a labelCap's bound.
	labelOther = "other"
	// labelUnknown replaces an empty label value.
	labelUnknown = "unknown"
	// maxLabelLen bounds one label value taken from an event.
	maxLabelLen = 64
)

// labelCap bounds the distinct values of one label that events choose
// (project, model, provider, tool): the first max values are kept, later
// new ones become "other", so a misbehaving worker cannot blow up the
// series count. It is not safe for concurrent use.
type labelCap struct {
	max  int
	seen map[string]struct{}
}

func newLabelCap(max int) *labelCap {
	return &labelCap{max: max, seen: make(map[string]struct{})}
}

// value returns v, or "unknown" for an empty v, or "other" once max other
// values have been seen. Long values are cut to maxLabelLen bytes.
func (l *labelCap) value(v string) string {
	if v == "" {
		return labelUnknown
	}
	if _, ok := l.seen[v]; ok {
		return v
	}
	if len(v) > maxLabelLen || strings.ContainsAny(v, "\x00\n\r") {
		v = clean(v)
		if _, ok := l.seen[v]; ok {
			return v
		}
	}
	if len(l.seen) >= l.max {
		return labelOther
	}
	l.seen[v] = struct{}{}
	return v
}

func clean(v string) string {
	v = strings.Map(func(r rune) rune {
		if r == 0 || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	if len(v) > maxLabelLen {
		v = v[:maxLabelLen]
	}
	return v
}
