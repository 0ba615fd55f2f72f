package live

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// PrintLinks prints where to look while the workload runs: the HUD and
// metrics of the server at base, and the Grafana boards at grafana.
func PrintLinks(w io.Writer, base, grafana string) {
	fmt.Fprintf(w, "  HUD      %s/hud\n", base)
	fmt.Fprintf(w, "  metrics  %s/metrics\n", base)
	fmt.Fprintf(w, "  Grafana  %s/d/observatory-sre (SRE) and %s/d/observatory-cfo (CFO), with the compose stack\n", grafana, grafana)
}

// StartProgress prints wl's progress on w until the returned stop is
// called: a line rewritten in place every second on a terminal (tty), a
// plain line every 5 s otherwise. total is the run's duration (0: none).
func StartProgress(w io.Writer, tty bool, wl *Workload, total time.Duration) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	line := func() string {
		f := wl.Figures()
		var enq, refused int64
		for _, t := range f.ByTenant {
			enq += t.Enqueued
			refused += t.Refused
		}
		of := ""
		if total > 0 {
			of = " / " + total.String()
		}
		return fmt.Sprintf("live %s%s  http %d (%.1f/s)  4xx %d  5xx %d  missions %d queued, %d refused by budget  cross-tenant %d/%d refused",
			(time.Duration(f.DurationSec) * time.Second).Round(time.Second), of, f.HTTPCalls, f.RatePerSec, f.Status4xx, f.Status5xx,
			enq, refused, f.CrossTenantDenied, f.CrossTenantAttempts)
	}
	go func() {
		defer close(stopped)
		every := 5 * time.Second
		if tty {
			every = time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s\n", line())
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line())
				} else {
					fmt.Fprintln(w, line())
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// Print prints the per-tenant table and the proof block of a workload.
func Print(w io.Writer, f Figures) {
	fmt.Fprintln(w, "\nPer tenant")
	for _, t := range f.ByTenant {
		fmt.Fprintf(w, "  %-8s %4d missions enqueued  %4d completed  %3d failed  %3d refused by budget  %3d throttled  spent $%s\n",
			t.ProjectID, t.Enqueued, t.Completed, t.Failed, t.Refused, t.Throttled, t.SpendUSD.Cents())
	}
	fmt.Fprintln(w, "\nProof")
	fmt.Fprintf(w, "  HTTP calls          %d in %.0f s (%.1f/s)\n", f.HTTPCalls, f.DurationSec, f.RatePerSec)
	fmt.Fprintf(w, "  answers             %d 2xx, %d 4xx, %d 5xx\n", f.Status2xx, f.Status4xx, f.Status5xx)
	fmt.Fprintf(w, "  probes refused      %d with 401, %d with 404; %d wrong passwords refused\n", f.Probes401, f.Probes404, f.LoginsRefused)
	fmt.Fprintf(w, "  cross-tenant        %d attempts, %d refused with 403\n", f.CrossTenantAttempts, f.CrossTenantDenied)
	fmt.Fprintf(w, "  unexpected answers  %d\n", f.Unexpected)
	if f.FirstUnexpected != "" {
		fmt.Fprintf(w, "    the first: %s\n", f.FirstUnexpected)
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "  %s\n", b)
}
