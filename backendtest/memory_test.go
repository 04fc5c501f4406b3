package backendtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
)

func TestMemoryPassesTheSuite(t *testing.T) {
	backendtest.Run(t, func(*testing.T) tiercache.Backend[string] { return backendtest.NewMemory[string]() })
}

func TestMemoryPutPeekFlush(t *testing.T) {
	ctx := context.Background()
	b := backendtest.NewMemory[string]()
	b.Put("a", tiercache.CacheValue[string]{Data: "put"})
	b.Put("old", tiercache.CacheValue[string]{Data: "expired", Expire: time.Now().Add(-time.Second)})

	v, err := b.Get(ctx, "a")
	require.NoError(t, err)
	require.NotNil(t, v)
	assert.Equal(t, "put", v.Data)
	got, err := b.Get(ctx, "old")
	assert.NoError(t, err)
	assert.Nil(t, got, "Get never returns an expired value")
	p, ok := b.Peek("old")
	assert.True(t, ok, "Peek sees it")
	assert.Equal(t, "expired", p.Data)

	require.NoError(t, b.Flush(ctx))
	_, ok = b.Peek("a")
	assert.False(t, ok, "Flush removes every entry")
}

func TestMemoryFails(t *testing.T) {
	ctx := context.Background()
	errGet, errSet, errDel := errors.New("get"), errors.New("set"), errors.New("delete")
	b := backendtest.NewMemory[string]()
	b.Put("k", tiercache.CacheValue[string]{Data: "v"})

	b.FailGet(errGet)
	b.FailSet(errSet)
	b.FailDelete(errDel)
	_, err := b.Get(ctx, "k")
	assert.ErrorIs(t, err, errGet)
	assert.ErrorIs(t, b.Set(ctx, "k", tiercache.CacheValue[string]{Data: "w"}), errSet)
	assert.ErrorIs(t, b.Delete(ctx, "k"), errDel)
	v, _ := b.Peek("k")
	assert.Equal(t, "v", v.Data, "a failed write changes nothing")

	b.FailGet(nil)
	b.FailSet(nil)
	b.FailDelete(nil)
	require.NoError(t, b.Set(ctx, "k", tiercache.CacheValue[string]{Data: "w"}))
	got, err := b.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "w", got.Data)
	require.NoError(t, b.Delete(ctx, "k"))
	_, ok := b.Peek("k")
	assert.False(t, ok)
}
