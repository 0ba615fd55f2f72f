package hud

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/sagewai/observatory/fleet"
)

// The topology is drawn in a fixed SVG coordinate system: agents on an
// outer ellipse, grouped by project; workers on an inner ellipse; the
// mission queue at the centre. A mission in flight sits on the edge between
// its worker and its agent, as far along it as its progress (pct). The
// geometry below is mirrored line for line by layout() in static/hud.js, so
// that the page the server renders and the page the script keeps live put
// every node in the same place; a browser test checks that they agree.
const (
	TopoW = 1200
	TopoH = 700

	topoCX     = 600
	topoCY     = 350
	agentRX    = 380
	agentRY    = 250
	workerRX   = 190
	workerRY   = 120
	agentPerim = 2000 // about the perimeter of the agent ellipse
	workerPeri = 986  // about the perimeter of the worker ellipse
	queueR     = 18   // radius of the queue node

	// MaxAgentLabels and MaxWorkerLabels: above these counts, nodes carry
	// no labels (the dossier names them).
	MaxAgentLabels  = 36
	MaxWorkerLabels = 16
	// labelRunes bounds a node label.
	labelRunes = 24
)

// Node is a node of the topology: its centre, radius and, for agents, where
// its label goes.
type Node struct {
	ID        string
	X, Y, R   float64
	LX, LY    float64 // label anchor
	Anchor    string  // text-anchor of the label: start, middle or end
	Label     string  // empty when the graph is too dense for labels
	ProjectID string  // the agent's project, or the worker's first
	Angle     float64 // radians; where on its ellipse the node sits
}

// GroupLabel names the arc of one project's agents.
type GroupLabel struct {
	ProjectID string
	X, Y      float64
}

// Layout places the nodes of a topology.
type Layout struct {
	Agents  map[string]Node
	Workers map[string]Node
	Groups  []GroupLabel
	// AgentOrder and WorkerOrder list the ids in drawing order.
	AgentOrder, WorkerOrder []string
}

// Place computes the layout of agents and workers.
func Place(agents map[string]fleet.Agent, workers map[string]fleet.Worker) Layout {
	l := Layout{Agents: make(map[string]Node, len(agents)), Workers: make(map[string]Node, len(workers))}

	type key struct{ project, id string }
	as := make([]key, 0, len(agents))
	for id, a := range agents {
		as = append(as, key{a.ProjectID, id})
	}
	slices.SortFunc(as, func(a, b key) int { return cmp.Or(cmp.Compare(a.project, b.project), cmp.Compare(a.id, b.id)) })
	groups := 0
	for i, a := range as {
		if i == 0 || a.project != as[i-1].project {
			groups++
		}
	}
	gaps := 0
	if groups > 1 {
		gaps = groups
	}
	total := len(as) + gaps
	if total > 0 {
		step := 2 * math.Pi / float64(total)
		r := clamp(float64(0.32*agentPerim)/float64(total), 2.5, 12)
		labels := len(as) <= MaxAgentLabels
		slot, g, first := 0, -1, 0
		for i, a := range as {
			if i == 0 || a.project != as[i-1].project {
				if g >= 0 {
					l.Groups = append(l.Groups, groupLabel(as[first].project, first+gapsBefore(g, gaps), i-first, step))
				}
				g++
				first = i
			}
			slot = i + gapsBefore(g, gaps)
			ang := -math.Pi/2 + (float64(slot)+0.5)*step
			n := Node{ID: a.id, ProjectID: a.project, Angle: ang, R: r}
			n.X, n.Y = topoCX+agentRX*math.Cos(ang), topoCY+agentRY*math.Sin(ang)
			if labels {
				n.Label = shorten(agents[a.id].Name)
				n.LX = topoCX + (agentRX+r+8)*math.Cos(ang)
				n.LY = topoCY + (agentRY+r+8)*math.Sin(ang) + 4
				n.Anchor = "start"
				if math.Cos(ang) < -0.2 {
					n.Anchor = "end"
				} else if math.Cos(ang) <= 0.2 {
					n.Anchor = "middle"
					if math.Sin(ang) < 0 {
						n.LY -= 6
					} else {
						n.LY += 8
					}
				}
			}
			l.Agents[a.id] = n
			l.AgentOrder = append(l.AgentOrder, a.id)
		}
		if len(as) > 0 {
			l.Groups = append(l.Groups, groupLabel(as[first].project, first+gapsBefore(g, gaps), len(as)-first, step))
		}
	}

	ws := make([]key, 0, len(workers))
	for id, w := range workers {
		p := ""
		if len(w.Projects) > 0 {
			p = w.Projects[0]
		}
		ws = append(ws, key{p, id})
	}
	slices.SortFunc(ws, func(a, b key) int { return cmp.Or(cmp.Compare(a.project, b.project), cmp.Compare(a.id, b.id)) })
	if m := len(ws); m > 0 {
		step := 2 * math.Pi / float64(m)
		r := clamp(float64(0.3*workerPeri)/float64(m), 4, 15)
		for j, w := range ws {
			ang := -math.Pi/2 + (float64(j)+0.5)*step
			n := Node{ID: w.id, ProjectID: w.project, Angle: ang, R: r}
			n.X, n.Y = topoCX+workerRX*math.Cos(ang), topoCY+workerRY*math.Sin(ang)
			if m <= MaxWorkerLabels {
				n.Label = shorten(w.id)
				n.LX, n.LY, n.Anchor = n.X, n.Y+r+13, "middle"
			}
			l.Workers[w.id] = n
			l.WorkerOrder = append(l.WorkerOrder, w.id)
		}
	}
	return l
}

// gapsBefore is how many empty slots precede group g.
func gapsBefore(g, gaps int) int {
	if gaps == 0 {
		return 0
	}
	return g
}

func groupLabel(project string, firstSlot, size int, step float64) GroupLabel {
	ang := -math.Pi/2 + (float64(firstSlot)+float64(size)/2)*step
	return GroupLabel{ProjectID: project, X: topoCX + agentRX*0.74*math.Cos(ang), Y: topoCY + agentRY*0.74*math.Sin(ang) + 4}
}

// MissionPlace is where a mission in flight is drawn: its dot, and the edge
// it travels along (HasEdge false for a queued mission, which waits at the
// centre).
type MissionPlace struct {
	X, Y              float64
	HasEdge           bool
	X1, Y1, X2, Y2    float64
	WorkerID, AgentID string // the nodes of its edge that are drawn
	QueueSlot         int    // for a queued mission: its place in the queue
	Queued            bool
	Pct               float64
}

// PlaceMissions places every mission of missions on l.
func PlaceMissions(l Layout, missions map[string]fleet.Mission) map[string]MissionPlace {
	out := make(map[string]MissionPlace, len(missions))
	var queued []string
	for id, m := range missions {
		w, wok := l.Workers[m.WorkerID]
		a, aok := l.Agents[m.AgentID]
		t := 0.1 + 0.8*clamp(m.Pct, 0, 100)/100
		p := MissionPlace{Pct: m.Pct}
		switch {
		case wok && aok:
			p.HasEdge, p.X1, p.Y1, p.X2, p.Y2 = true, w.X, w.Y, a.X, a.Y
			p.WorkerID, p.AgentID = w.ID, a.ID
		case aok:
			p.HasEdge, p.X1, p.Y1, p.X2, p.Y2 = true, topoCX, topoCY, a.X, a.Y
			p.AgentID = a.ID
		case wok:
			p.HasEdge, p.X1, p.Y1, p.X2, p.Y2 = true, topoCX, topoCY, w.X, w.Y
			p.WorkerID = w.ID
			t = 0.88
		default:
			queued = append(queued, id)
			continue
		}
		p.X, p.Y = p.X1+(p.X2-p.X1)*t, p.Y1+(p.Y2-p.Y1)*t
		out[id] = p
	}
	slices.Sort(queued)
	for k, id := range queued {
		out[id] = MissionPlace{Queued: true, QueueSlot: k, Pct: missions[id].Pct, X: queueX(k), Y: queueY(k)}
	}
	return out
}

// goldenAngle spreads queued missions on a sunflower spiral around the
// queue node.
const goldenAngle = 2.399963229728653

func queueX(k int) float64 {
	return topoCX + (queueR+8+6*math.Sqrt(float64(k)))*math.Cos(float64(k)*goldenAngle)
}

func queueY(k int) float64 {
	return topoCY + (queueR+8+6*math.Sqrt(float64(k)))*math.Sin(float64(k)*goldenAngle)
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// shorten bounds a label to labelRunes runes.
func shorten(s string) string {
	r := []rune(s)
	if len(r) <= labelRunes {
		return s
	}
	return string(r[:labelRunes-1]) + "…"
}

// Coord prints a coordinate rounded to a tenth, as the script does.
func Coord(x float64) string {
	return strconv.FormatFloat(math.Floor(float64(x*10)+0.5)/10, 'f', -1, 64)
}

func slicesSort(ids []string) { slices.Sort(ids) }
