package durable

import (
	"context"
	"encoding/json"
	"fmt"
)

// KVGetter and KVPutter are what GetJSON and PutJSON need: a *Storage or a
// *Txn.
type KVGetter interface {
	Get(key string) ([]byte, bool, error)
}

type KVPutter interface {
	Put(key string, value []byte) error
}

// GetJSON reads key and decodes it as JSON into a T; found is false (and
// v the zero T) when key has no value.
func GetJSON[T any](s KVGetter, key string) (v T, found bool, err error) {
	b, found, err := s.Get(key)
	if err != nil || !found {
		return v, false, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("durable: decode %q: %w", key, err)
	}
	return v, true, nil
}

// PutJSON stores v encoded as JSON under key.
func PutJSON[T any](s KVPutter, key string, v T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("durable: encode %q: %w", key, err)
	}
	return s.Put(key, b)
}

// CallJSON calls method on the actor's object with req encoded as JSON
// and decodes the result as a Resp.
func CallJSON[Resp, Req any](ctx context.Context, a *Actor, method string, req Req) (Resp, error) {
	var resp Resp
	arg, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("durable: encode %s argument: %w", method, err)
	}
	out, err := a.Call(ctx, method, arg)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return resp, fmt.Errorf("durable: decode %s result: %w", method, err)
	}
	return resp, nil
}
