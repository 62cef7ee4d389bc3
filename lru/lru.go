// Package lru is a map that keeps at most a given number of entries, dropping the least recently used.
package lru

import "container/list"

// Cache holds at most max entries. It is not safe for concurrent use.
type Cache[V any] struct {
	max   int
	order *list.List // front: most recent
	items map[string]*list.Element
}

type entry[V any] struct {
	key   string
	value V
}

// New returns an empty cache of at most max entries.
func New[V any](max int) *Cache[V] {
	return &Cache[V]{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// Get returns the value of key and makes it the most recently used.
func (c *Cache[V]) Get(key string) (V, bool) {
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*entry[V]).value, true
	}
	var zero V
	return zero, false
}

// Put sets the value of key, the most recently used; past max entries the least recently used one goes.
func (c *Cache[V]) Put(key string, v V) {
	if e, ok := c.items[key]; ok {
		e.Value.(*entry[V]).value = v
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&entry[V]{key, v})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry[V]).key)
	}
}
