package main

import (
	"errors"
	"flag"
	"strconv"
	"strings"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/stream"
)

// boundsFlags are the bounds on what the fold keeps of the ids events
// choose (fleet.Limits: an event past one is rejected, counted with its
// reason) and on the streams' sizes. Every replica of one FLEET must use
// the same fold bounds, or their folds differ.
type boundsFlags struct {
	limits                         fleet.Limits
	fleetMaxBytes, auditMaxBytes   int64
	auditMaxPerSubject             int64
	fleetMaxBytesS, auditMaxBytesS string
}

func (b *boundsFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	d := fleet.DefaultLimits
	intFlag := func(p *int, name, env string, def int, what string) {
		fs.IntVar(p, name, envInt(getenv, env, def), what+" (env "+env+")")
	}
	intFlag(&b.limits.Projects, "fold-max-projects", "OBSERVATORY_FOLD_MAX_PROJECTS", d.Projects, "projects the fold keeps that no project.created announced")
	intFlag(&b.limits.AnnouncedProjects, "fold-max-announced-projects", "OBSERVATORY_FOLD_MAX_ANNOUNCED_PROJECTS", d.AnnouncedProjects, "projects the fold keeps that project.created announced")
	intFlag(&b.limits.Agents, "fold-max-agents", "OBSERVATORY_FOLD_MAX_AGENTS", d.Agents, "agents the fold keeps per project")
	intFlag(&b.limits.Missions, "fold-max-missions", "OBSERVATORY_FOLD_MAX_MISSIONS", d.Missions, "missions in flight the fold keeps per project")
	intFlag(&b.limits.Workers, "fold-max-workers", "OBSERVATORY_FOLD_MAX_WORKERS", d.Workers, "workers the fold keeps per project")
	intFlag(&b.limits.Budgets, "fold-max-budgets", "OBSERVATORY_FOLD_MAX_BUDGETS", d.Budgets, "budget standings the fold keeps per project")
	intFlag(&b.limits.OpenRuns, "fold-max-open-runs", "OBSERVATORY_FOLD_MAX_OPEN_RUNS", d.OpenRuns, "runs in progress the fold follows per project (past it the oldest is dropped)")
	intFlag(&b.limits.FinishedMissions, "fold-max-finished-missions", "OBSERVATORY_FOLD_MAX_FINISHED_MISSIONS", d.FinishedMissions, "finished mission ids the fold remembers per project")
	fs.DurationVar(&b.limits.ForgetAgentsAfter, "fold-forget-agents-after", envDuration(getenv, "OBSERVATORY_FOLD_FORGET_AGENTS_AFTER", d.ForgetAgentsAfter),
		"how long an agent no event names stays in the fold (env OBSERVATORY_FOLD_FORGET_AGENTS_AFTER)")
	fs.StringVar(&b.fleetMaxBytesS, "fleet-max-bytes", envDefault(getenv, "OBSERVATORY_FLEET_MAX_BYTES", "8GiB"),
		"how much FLEET keeps before it drops its oldest events, e.g. 8GiB, 500MiB (env OBSERVATORY_FLEET_MAX_BYTES)")
	fs.StringVar(&b.auditMaxBytesS, "audit-max-bytes", envDefault(getenv, "OBSERVATORY_AUDIT_MAX_BYTES", "1GiB"),
		"how much AUDIT keeps before it drops its oldest events (env OBSERVATORY_AUDIT_MAX_BYTES)")
	fs.Int64Var(&b.auditMaxPerSubject, "audit-max-per-subject", int64(envInt(getenv, "OBSERVATORY_AUDIT_MAX_PER_SUBJECT", stream.AuditMaxMsgsPerSubject)),
		"events AUDIT keeps of one project and type (env OBSERVATORY_AUDIT_MAX_PER_SUBJECT)")
}

// check parses the sizes and refuses bounds that are not positive.
func (b *boundsFlags) check() error {
	var err error
	if b.fleetMaxBytes, err = parseBytes("--fleet-max-bytes", b.fleetMaxBytesS); err != nil {
		return err
	}
	if b.auditMaxBytes, err = parseBytes("--audit-max-bytes", b.auditMaxBytesS); err != nil {
		return err
	}
	l := b.limits
	for _, v := range []int{l.Projects, l.AnnouncedProjects, l.Agents, l.Missions, l.Workers, l.Budgets, l.OpenRuns, l.FinishedMissions} {
		if v < 1 {
			return errors.New("the --fold-max-* bounds must be at least 1")
		}
	}
	if l.ForgetAgentsAfter <= 0 || b.auditMaxPerSubject < 1 {
		return errors.New("--fold-forget-agents-after and --audit-max-per-subject must be positive")
	}
	return nil
}

// streams returns the streams' configuration with these sizes.
func (b *boundsFlags) streams(c stream.StreamsConfig) stream.StreamsConfig {
	c.FleetMaxBytes, c.AuditMaxBytes, c.AuditMaxMsgsPerSubject = b.fleetMaxBytes, b.auditMaxBytes, b.auditMaxPerSubject
	return c
}

// parseBytes reads a size: a whole number of bytes, or one with a unit
// (KiB, MiB, GiB, TiB; KB, MB, GB, TB as powers of ten).
func parseBytes(flagName, s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > (1<<62)/mult {
		return 0, errors.New(flagName + ": want a positive size such as 8GiB or 500MiB")
	}
	return n * mult, nil
}
