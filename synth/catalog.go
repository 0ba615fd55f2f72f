package synth

import "github.com/sagewai/observatory/fleet"

// role is one kind of agent a team runs: what it is called, what it can
// use, the missions it gets and the steps it goes through.
type role struct {
	slug        string // the agent id is <project>-<team>-<slug>
	role        string
	fast        bool // runs on the team's cheaper model (the last of ProjectMix.Models)
	tools       []string
	skills      []string
	description string
	titles      []string // mission titles; %d is replaced by a ticket-like number
	steps       []string // the mission plan, in order
}

// catalogs holds the agents of each kind of team, by team name. A team
// whose name is not here gets the general catalog.
var catalogs = map[string][]role{
	"support": {
		{slug: "triager", role: "triage", fast: true,
			tools:       []string{"zendesk.search", "kb.lookup"},
			skills:      []string{"classification", "sentiment", "priority-routing"},
			description: "Reads every incoming ticket, tags product area and urgency, and routes it to the right queue.",
			titles: []string{"Triage ticket #%d: login loop after password reset", "Triage ticket #%d: export to CSV times out",
				"Triage ticket #%d: SSO with Okta rejects new users", "Triage ticket #%d: webhook deliveries delayed"},
			steps: []string{"read ticket", "classify product area", "search similar tickets", "set priority and route"}},
		{slug: "responder", role: "reply", fast: false,
			tools:       []string{"kb.lookup", "orders.lookup", "zendesk.reply"},
			skills:      []string{"drafting", "tone-matching", "policy-grounding"},
			description: "Drafts customer replies grounded in the knowledge base and the customer's order history.",
			titles: []string{"Answer ticket #%d: how to add a seat to the team plan", "Answer ticket #%d: invoice shows the wrong VAT id",
				"Answer ticket #%d: API key rotation steps", "Answer ticket #%d: mobile app stuck on sync"},
			steps: []string{"load conversation", "look up knowledge base", "check order history", "draft reply", "send reply"}},
		{slug: "escalations", role: "escalation", fast: false,
			tools:       []string{"zendesk.search", "jira.create", "slack.post"},
			skills:      []string{"root-cause", "summarization", "repro-steps"},
			description: "Spots tickets that need an engineer, writes repro steps and files a Jira issue for the on-call team.",
			titles: []string{"Escalate ticket #%d: data missing after workspace merge", "Escalate ticket #%d: 500 on report builder",
				"Escalate ticket #%d: duplicate charges for EU customers"},
			steps: []string{"gather related tickets", "extract repro steps", "file Jira issue", "notify on-call"}},
		{slug: "refunds", role: "billing", fast: true,
			tools:       []string{"orders.lookup", "stripe.refund", "zendesk.reply"},
			skills:      []string{"policy-check", "refund-approval"},
			description: "Checks refund requests against the refund policy and issues those under the auto-approve limit.",
			titles: []string{"Refund request #%d: charged twice for the annual plan", "Refund request #%d: cancelled within trial",
				"Refund request #%d: downgrade proration"},
			steps: []string{"verify charge", "check refund policy", "issue refund", "confirm with customer"}},
		{slug: "qa-reviewer", role: "review", fast: true,
			tools:       []string{"zendesk.search", "kb.lookup"},
			skills:      []string{"tone-review", "accuracy-check"},
			description: "Samples sent replies and scores them for accuracy and tone against the style guide.",
			titles:      []string{"Review reply batch #%d", "Audit macro usage for queue #%d"},
			steps:       []string{"sample replies", "score accuracy", "score tone", "write feedback"}},
	},
	"research": {
		{slug: "scout", role: "literature-search", fast: true,
			tools:       []string{"arxiv.search", "scholar.search", "web.fetch"},
			skills:      []string{"query-expansion", "relevance-ranking"},
			description: "Finds and ranks recent papers and preprints for a research question.",
			titles: []string{"Survey #%d: retrieval-augmented generation for long documents", "Survey #%d: speculative decoding benchmarks",
				"Survey #%d: battery degradation models for grid storage"},
			steps: []string{"expand query", "search preprints", "fetch abstracts", "rank by relevance"}},
		{slug: "analyst", role: "analysis", fast: false,
			tools:       []string{"sql.query", "python.exec", "charts.render"},
			skills:      []string{"statistics", "data-cleaning", "forecasting"},
			description: "Pulls data from the warehouse, runs the analysis in a sandbox and charts the result.",
			titles: []string{"Analysis #%d: churn by pricing tier, last 6 quarters", "Analysis #%d: A/B test of onboarding checklist",
				"Analysis #%d: supplier lead times vs. stock-outs"},
			steps: []string{"write query", "clean data", "run model", "chart results", "summarize findings"}},
		{slug: "fact-checker", role: "verification", fast: true,
			tools:       []string{"web.fetch", "citations.verify"},
			skills:      []string{"claim-extraction", "source-grading"},
			description: "Extracts the claims of a draft and checks each against its cited sources.",
			titles:      []string{"Fact-check draft #%d: market sizing memo", "Fact-check draft #%d: competitor teardown"},
			steps:       []string{"extract claims", "fetch sources", "verify citations", "flag unsupported claims"}},
		{slug: "writer", role: "report-writing", fast: false,
			tools:       []string{"docs.write", "citations.format"},
			skills:      []string{"synthesis", "technical-writing"},
			description: "Turns findings into a cited brief for the product and strategy teams.",
			titles:      []string{"Brief #%d: state of open-weight models", "Brief #%d: EU AI Act obligations for our products"},
			steps:       []string{"outline", "draft sections", "insert citations", "edit for length"}},
	},
	"ops": {
		{slug: "incident-responder", role: "incident-response", fast: false,
			tools:       []string{"pagerduty.ack", "grafana.query", "k8s.describe", "slack.post"},
			skills:      []string{"triage", "correlation", "status-updates"},
			description: "Acknowledges pages, correlates alerts with recent changes and posts status updates.",
			titles: []string{"Incident #%d: checkout p99 latency above SLO", "Incident #%d: queue consumer lag on orders",
				"Incident #%d: 5xx spike on api-gateway"},
			steps: []string{"acknowledge page", "query dashboards", "correlate with deploys", "post status update"}},
		{slug: "log-analyst", role: "log-analysis", fast: true,
			tools:       []string{"victorialogs.query", "grep.search"},
			skills:      []string{"pattern-mining", "anomaly-detection"},
			description: "Mines application logs for new error patterns and summarizes them with counts and examples.",
			titles:      []string{"Log sweep #%d: new error signatures in payments", "Log sweep #%d: auth service warnings"},
			steps:       []string{"query logs", "cluster messages", "compare with baseline", "summarize anomalies"}},
		{slug: "deploy-guard", role: "change-review", fast: false,
			tools:       []string{"github.diff", "argo.status", "k8s.rollout"},
			skills:      []string{"risk-scoring", "rollback-planning"},
			description: "Reviews every production rollout, scores its risk and watches it until it is healthy.",
			titles:      []string{"Review rollout #%d: billing-service v2.14", "Review rollout #%d: search-indexer config change"},
			steps:       []string{"read diff", "score risk", "watch rollout", "sign off"}},
		{slug: "runbook-runner", role: "runbook", fast: true,
			tools:       []string{"k8s.scale", "ssh.exec", "slack.post"},
			skills:      []string{"runbook-execution", "verification"},
			description: "Runs approved runbooks step by step and verifies each step before the next.",
			titles:      []string{"Runbook #%d: rotate TLS certificates", "Runbook #%d: drain node pool for upgrade"},
			steps:       []string{"load runbook", "run step", "verify step", "report"}},
	},
	"general": {
		{slug: "assistant", role: "assistant", fast: false,
			tools:       []string{"web.fetch", "docs.search"},
			skills:      []string{"question-answering", "summarization"},
			description: "Answers internal questions from the company wiki and the web.",
			titles:      []string{"Question #%d: travel policy for conferences", "Question #%d: how to request a new laptop"},
			steps:       []string{"search wiki", "read pages", "draft answer"}},
		{slug: "summarizer", role: "summarization", fast: true,
			tools:       []string{"docs.search", "docs.write"},
			skills:      []string{"summarization"},
			description: "Summarizes long documents and meeting notes into a page.",
			titles:      []string{"Summary #%d: weekly leadership notes", "Summary #%d: customer interview transcripts"},
			steps:       []string{"load document", "summarize sections", "write summary"}},
	},
}

// catalog returns the agent roles of team.
func catalog(team string) []role {
	if c, ok := catalogs[team]; ok {
		return c
	}
	return catalogs["general"]
}

// CallProfile is how a model behaves in the synthetic fleets: the token
// counts and latency ranges of one call. synth's demo fleet and the worker
// package's synthetic agent share it.
type CallProfile struct {
	Provider       string
	InMin, InMax   int64
	OutMin, OutMax int64
	LatMin, LatMax float64 // ms
	Cache          bool    // Anthropic-style prompt caching: cache reads after the first call
}

var profiles = map[string]CallProfile{
	"claude-sonnet-4-5": {Provider: "anthropic", InMin: 1200, InMax: 6000, OutMin: 250, OutMax: 1500, LatMin: 1200, LatMax: 4000, Cache: true},
	"claude-haiku-4-5":  {Provider: "anthropic", InMin: 500, InMax: 3000, OutMin: 100, OutMax: 700, LatMin: 300, LatMax: 1300, Cache: true},
	"gpt-5":             {Provider: "openai", InMin: 1000, InMax: 6000, OutMin: 300, OutMax: 1500, LatMin: 1500, LatMax: 4000},
	"gpt-5-mini":        {Provider: "openai", InMin: 500, InMax: 3500, OutMin: 100, OutMax: 900, LatMin: 500, LatMax: 1800},
	"gemini-2.5-flash":  {Provider: "google", InMin: 500, InMax: 4500, OutMin: 100, OutMax: 1100, LatMin: 400, LatMax: 1600},
	"llama3.1":          {Provider: "local", InMin: 500, InMax: 3000, OutMin: 100, OutMax: 800, LatMin: 900, LatMax: 3500},
}

// ProfileOf returns the profile of model; a model without one gets the
// widest ranges, and its provider from pricing (nil pricing: "unknown").
func ProfileOf(model string, pricing *fleet.Pricing) CallProfile {
	if p, ok := profiles[model]; ok {
		return p
	}
	p := CallProfile{Provider: "unknown", InMin: 500, InMax: 6000, OutMin: 100, OutMax: 1500, LatMin: 300, LatMax: 4000}
	if pr, ok := pricing.Lookup(model); ok && pr.Provider != "" {
		p.Provider = pr.Provider
	}
	p.Cache = p.Provider == "anthropic"
	return p
}

// Failure messages of failed missions, by what failed.
var (
	llmErrors = []string{
		"rate_limited: 429 from provider after 3 retries",
		"model returned invalid JSON for the response schema",
		"context window exceeded after tool output",
	}
	toolErrors = []string{
		"%s: upstream returned 503 after 3 retries",
		"%s: timed out after 30s",
		"%s: permission denied for service account",
	}
)
