package record

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

func newTestDecoder(b []byte) *msgpack.Decoder { return msgpack.NewDecoder(bytes.NewReader(b)) }
