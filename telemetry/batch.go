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

	queue   chan T
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
		queue: make(chan T, cfg.QueueSize),
		flush: make(chan chan struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	stats.queued = func() int { return len(b.queue) }
	go b.run()
	return b
}

// enqueue offers v to the queue without blocking.
func (b *batcher[T]) enqueue(v T) {
	if b.stopped.Load() {
		return
	}
	select {
	case b.queue <- v:
	default:
		b.stats.queueFull.Add(1)
	}
}

func (b *batcher[T]) run() {
	defer close(b.done)
	batch := make([]T, 0, b.cfg.BatchSize)
	send := func() {
		if len(batch) == 0 {
			return
		}
		b.exportBatch(batch)
		clear(batch)
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case v := <-b.queue:
				batch = append(batch, v)
				if len(batch) >= b.cfg.BatchSize {
					send()
				}
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
			batch = append(batch, v)
			if len(batch) >= b.cfg.BatchSize {
				send()
			}
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
type spanQueue struct {
	b   *batcher[sdktrace.ReadOnlySpan]
	exp sdktrace.SpanExporter
}

var _ sdktrace.SpanProcessor = (*spanQueue)(nil)

func newSpanQueue(exp sdktrace.SpanExporter, cfg batchConfig, stats *pipelineStats, onError func(error)) *spanQueue {
	return &spanQueue{b: newBatcher(cfg, exp.ExportSpans, stats, onError), exp: exp}
}

func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanContext().IsSampled() {
		q.b.enqueue(s)
	}
}

func (q *spanQueue) ForceFlush(ctx context.Context) error { return q.b.forceFlush(ctx) }

func (q *spanQueue) Shutdown(ctx context.Context) error {
	return errors.Join(q.b.shutdown(ctx), q.exp.Shutdown(ctx))
}

// logQueue is the log Processor that batches records to an exporter.
type logQueue struct {
	b   *batcher[sdklog.Record]
	exp sdklog.Exporter
}

var _ sdklog.Processor = (*logQueue)(nil)

func newLogQueue(exp sdklog.Exporter, cfg batchConfig, stats *pipelineStats, onError func(error)) *logQueue {
	return &logQueue{b: newBatcher(cfg, exp.Export, stats, onError), exp: exp}
}

func (q *logQueue) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (q *logQueue) OnEmit(_ context.Context, r *sdklog.Record) error {
	q.b.enqueue(r.Clone())
	return nil
}

func (q *logQueue) ForceFlush(ctx context.Context) error { return q.b.forceFlush(ctx) }

func (q *logQueue) Shutdown(ctx context.Context) error {
	return errors.Join(q.b.shutdown(ctx), q.exp.Shutdown(ctx))
}
