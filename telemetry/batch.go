package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// pipelineStats counts what one signal's export pipeline did; the
// sagewai_otel_* metrics read them. All zero while the signal is off.
type pipelineStats struct {
	exported     atomic.Int64 // items the receiver accepted
	queueFull    atomic.Int64 // items dropped because the queue was full
	exportFailed atomic.Int64 // items dropped because their export failed
	failures     atomic.Int64 // failed export calls
	queued       func() int   // items waiting; nil while off
}

// batcher moves items from a bounded queue to an exporter in batches, on
// its own goroutine. Enqueue never blocks: a full queue drops the item and
// counts it. The SDK's batch processors drop silently; this one counts
// every item, so the pipeline's health is a metric.
type batcher[T any] struct {
	cfg     batchConfig
	export  func(context.Context, []T) error
	stats   *pipelineStats
	onError func(error)
	// permit, when set, is asked before a batch with derived items (seq
	// > 0) is exported, with the highest of their seqs: false keeps them
	// back, and they are handed to refused in order (Handoff: the lease's
	// marks are written before the export, never after).
	permit  func(top uint64) bool
	refused func(items []queued[T])

	queue   chan queued[T]
	flush   chan chan struct{}
	stop    chan struct{}
	stopped atomic.Bool
	once    sync.Once
	done    chan struct{}
	// ctx bounds every export; cancelled when Shutdown runs out of time.
	ctx    context.Context
	cancel context.CancelFunc
}

func newBatcher[T any](cfg batchConfig, export func(context.Context, []T) error, stats *pipelineStats, onError func(error)) *batcher[T] {
	b := &batcher[T]{
		cfg: cfg, export: export, stats: stats, onError: onError,
		queue: make(chan queued[T], cfg.QueueSize),
		flush: make(chan chan struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	stats.queued = func() int { return len(b.queue) }
	go b.run()
	return b
}

// queued is one item and the seq of the fleet event it was made from (0
// for the server's own items).
type queued[T any] struct {
	v   T
	seq uint64
}

// enqueue offers v to the queue without blocking; seq is the fleet event
// it derives from, 0 for none.
func (b *batcher[T]) enqueue(v T, seq uint64) {
	if b.stopped.Load() {
		return
	}
	select {
	case b.queue <- queued[T]{v, seq}:
	default:
		b.stats.queueFull.Add(1)
	}
}

func (b *batcher[T]) run() {
	defer close(b.done)
	items := make([]queued[T], 0, b.cfg.BatchSize)
	batch := make([]T, 0, b.cfg.BatchSize)
	send := func() {
		if len(items) == 0 {
			return
		}
		var top uint64 // the highest derived seq
		for _, q := range items {
			top = max(top, q.seq)
		}
		var held []queued[T]
		if top > 0 && b.permit != nil && !b.permit(top) {
			held = make([]queued[T], 0, len(items))
		}
		for _, q := range items {
			if held != nil && q.seq > 0 {
				held = append(held, q)
				continue
			}
			batch = append(batch, q.v)
		}
		if len(batch) > 0 {
			b.exportBatch(batch)
		}
		if len(held) > 0 {
			b.refused(held)
		}
		clear(items)
		items = items[:0]
		clear(batch)
		batch = batch[:0]
	}
	add := func(q queued[T]) {
		items = append(items, q)
		if len(items) >= b.cfg.BatchSize {
			send()
		}
	}
	drain := func() {
		for {
			select {
			case v := <-b.queue:
				add(v)
			default:
				send()
				return
			}
		}
	}
	timer := time.NewTimer(b.cfg.Delay)
	defer timer.Stop()
	for {
		select {
		case v := <-b.queue:
			add(v)
		case <-timer.C:
			send()
			timer.Reset(b.cfg.Delay)
		case ack := <-b.flush:
			drain()
			close(ack)
		case <-b.stop:
			drain()
			return
		}
	}
}

func (b *batcher[T]) exportBatch(batch []T) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.ExportTimeout)
	defer cancel()
	if err := b.export(ctx, batch); err != nil {
		b.stats.failures.Add(1)
		b.stats.exportFailed.Add(int64(len(batch)))
		b.onError(err)
		return
	}
	b.stats.exported.Add(int64(len(batch)))
}

// forceFlush exports everything queued and waits for it, or for ctx.
func (b *batcher[T]) forceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdown exports what is queued and stops the goroutine. When ctx ends
// first, the export in progress is cancelled and the rest is dropped.
func (b *batcher[T]) shutdown(ctx context.Context) error {
	b.once.Do(func() {
		b.stopped.Store(true)
		close(b.stop)
	})
	select {
	case <-b.done:
		b.cancel()
		return nil
	case <-ctx.Done():
		b.cancel()
		<-b.done
		return ctx.Err()
	}
}

// spanQueue is the SpanProcessor that batches ended spans to an exporter.
// Spans of the fleet scope go through handoff, when there is one.
type spanQueue struct {
	b       *batcher[sdktrace.ReadOnlySpan]
	exp     sdktrace.SpanExporter
	handoff *Handoff
}

var _ sdktrace.SpanProcessor = (*spanQueue)(nil)

func newSpanQueue(exp sdktrace.SpanExporter, cfg batchConfig, stats *pipelineStats, onError func(error), h *Handoff) *spanQueue {
	q := &spanQueue{b: newBatcher(cfg, exp.ExportSpans, stats, onError), exp: exp, handoff: h}
	if h != nil {
		wireHandoff(h, markTraces, q.b, &stats.queueFull)
	}
	return q
}

func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if q.handoff != nil && s.InstrumentationScope().Name == fleetScope {
		q.handoff.offer(markTraces, s)
		return
	}
	q.b.enqueue(s, 0)
}

func (q *spanQueue) ForceFlush(ctx context.Context) error { return q.b.forceFlush(ctx) }

func (q *spanQueue) Shutdown(ctx context.Context) error {
	return errors.Join(q.b.shutdown(ctx), q.exp.Shutdown(ctx))
}

// logQueue is the log Processor that batches records to an exporter.
// Records of the fleet scope go through handoff, when there is one.
type logQueue struct {
	b       *batcher[sdklog.Record]
	exp     sdklog.Exporter
	handoff *Handoff
}

var _ sdklog.Processor = (*logQueue)(nil)

func newLogQueue(exp sdklog.Exporter, cfg batchConfig, stats *pipelineStats, onError func(error), h *Handoff) *logQueue {
	q := &logQueue{b: newBatcher(cfg, exp.Export, stats, onError), exp: exp, handoff: h}
	if h != nil {
		wireHandoff(h, markLogs, q.b, &stats.queueFull)
	}
	return q
}

func (q *logQueue) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (q *logQueue) OnEmit(_ context.Context, r *sdklog.Record) error {
	if q.handoff != nil && r.InstrumentationScope().Name == fleetScope {
		q.handoff.offer(markLogs, r.Clone())
		return nil
	}
	q.b.enqueue(r.Clone(), 0)
	return nil
}

func (q *logQueue) ForceFlush(ctx context.Context) error { return q.b.forceFlush(ctx) }

func (q *logQueue) Shutdown(ctx context.Context) error {
	return errors.Join(q.b.shutdown(ctx), q.exp.Shutdown(ctx))
}

// wireHandoff connects a signal's batcher to h: derived items reach the
// batcher through h, and a batch of them is exported only when h
// permits; refused ones go back to h to be held.
func wireHandoff[T any](h *Handoff, signal int, b *batcher[T], drops *atomic.Int64) {
	b.permit = func(top uint64) bool { return h.permit(signal, top) }
	b.refused = func(items []queued[T]) {
		back := make([]heldItem, len(items))
		for i, q := range items {
			back[i] = heldItem{seq: q.seq, item: q.v}
		}
		h.hold(signal, back)
	}
	h.wire(signal, func(item any, seq uint64) { b.enqueue(item.(T), seq) }, drops)
}
