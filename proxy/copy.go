package proxy

import (
	"io"
	"sync"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBuffered is io.Copy with a pooled buffer, which keeps the hot path
// free of a 32 KiB allocation per response.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}

// boundedBuffer keeps the first max bytes written to it and counts the rest,
// so a response can be relayed in full while only a bounded prefix is kept.
type boundedBuffer struct {
	max   int
	buf   []byte
	total int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.total += len(p)
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Bytes returns the kept bytes, or nil when the response was larger than max
// (a prefix of a JSON document is useless).
func (b *boundedBuffer) Bytes() []byte {
	if b.total > b.max {
		return nil
	}
	return b.buf
}
