package tiercache

import "context"

// SequentialReadPolicy reads L1, and L2 only when L1 misses or fails.
//
// An L1 hit returns without touching L2 (whose report is StatusNotRun), with
// no goroutine and no allocation. Both readers run on the calling goroutine,
// so Read returns as soon as the running reader honours a cancelled ctx.
//
// Choose it when L1 is fast and usually warm: it puts the least load on L2.
// The zero value is ready to use.
type SequentialReadPolicy[T any] struct{}

// Read reads key from L1, then from L2 if needed. See ReadPolicy for the
// error contract.
func (SequentialReadPolicy[T]) Read(ctx context.Context, key string, l1, l2 ReadFunc[T], _ Offload) (ReadResult[T], error) {
	var res ReadResult[T]
	if err := checkRead(ctx, key, l1, l2); err != nil {
		return res, err
	}
	v, rep := readLayer(ctx, key, l1)
	res.L1 = rep
	if v != nil {
		res.Value, res.Source = v, L1
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, readCanceled(key, err)
	}
	v, res.L2 = readLayer(ctx, key, l2)
	if v != nil {
		res.Value, res.Source = v, L2
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, readCanceled(key, err)
	}
	return res, missOrFailure(key, &res)
}
