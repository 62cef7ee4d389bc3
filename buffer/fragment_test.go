package buffer

import "testing"

func TestFragmentEnds(t *testing.T) {
	for _, tc := range []struct{ in, first, last string }{
		{`{"id":1}`, `{"id":1}`, `{"id":1}`},
		{`{"id":1}` + Separator + `{"id":2}` + Separator + `{"id":3}`, `{"id":1}`, `{"id":3}`},
		{`{"a":",","b":[1,2]}` + Separator + `{"c":"x,y"}`, `{"a":",","b":[1,2]}`, `{"c":"x,y"}`},
		{`{"id":1}` + Separator + `{"id":2}`, `{"id":1}`, `{"id":2}`},
	} {
		first, last := FragmentEnds([]byte(tc.in))
		if string(first) != tc.first || string(last) != tc.last {
			t.Errorf("%q: %s and %s", tc.in, first, last)
		}
	}
}
