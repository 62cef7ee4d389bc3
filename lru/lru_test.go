package lru

import "testing"

func TestLeastRecentlyUsedGoesFirst(t *testing.T) {
	c := New[int](2)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Get("a") // b is now the least recently used
	c.Put("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Error("b was kept past the limit, although a was used after it")
	}
	c.Put("a", 10)
	for key, want := range map[string]int{"a": 10, "c": 3} {
		if v, ok := c.Get(key); !ok || v != want {
			t.Errorf("%s = %d (%v), want %d", key, v, ok, want)
		}
	}
}
