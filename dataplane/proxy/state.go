package proxy

import "context"

// stateCtx is a request's context carrying its exchange as the value of
// stateKey, for the rewrite, round trip and error hooks that only get the
// request. It lives inside the exchange, so that handing the exchange on
// costs no allocation of its own, as context.WithValue would.
type stateCtx struct {
	context.Context
	ex *exchange
}

func (c *stateCtx) Value(key any) any {
	if key == (stateKey{}) {
		return c.ex
	}
	return c.Context.Value(key)
}

// withState returns r's context with ex reachable under stateKey.
func (ex *exchange) withState(parent context.Context) context.Context {
	ex.state = stateCtx{Context: parent, ex: ex}
	return &ex.state
}
