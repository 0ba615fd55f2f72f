package vmstack

import "strings"

// WithTimeFilter returns the LogsQL query q limited to the last window
// (a LogsQL duration such as "5m") when q has no _time filter of its own,
// as Grafana limits a panel's query to the board's range:
// `_time:5m (filters) | pipes`. The parentheses keep an `or` in q's
// filters from escaping the limit.
func WithTimeFilter(q, window string) string {
	if strings.Contains(q, "_time:") {
		return q
	}
	filters, pipes := splitPipes(q)
	filters = strings.TrimSpace(filters)
	if filters == "" || filters == "*" {
		return "_time:" + window + pipes
	}
	return "_time:" + window + " (" + filters + ")" + pipes
}

// splitPipes splits a LogsQL query before its first | outside quotes.
func splitPipes(q string) (filters, pipes string) {
	var quote rune
	escaped := false
	for i, r := range q {
		switch {
		case escaped:
			escaped = false
		case quote != 0 && r == '\\':
			escaped = true
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '|':
			return q[:i], " " + q[i:]
		}
	}
	return q, ""
}
