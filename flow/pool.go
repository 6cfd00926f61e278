package flow

import "sync"

// Pool hands out Batches with a fixed capacity and takes them back on Release.
type Pool struct {
	size int
	p    sync.Pool
}

// NewPool returns a pool of batches that hold up to size records without growing.
func NewPool(size int) *Pool {
	pl := &Pool{size: size}
	pl.p.New = func() any { return &Batch{Records: make([]Record, 0, size), pool: pl} }
	return pl
}

// Get returns an empty batch.
func (p *Pool) Get() *Batch { return p.p.Get().(*Batch) }

func (p *Pool) put(b *Batch) { p.p.Put(b) }
