package bench

// Lookup returns the factory of a registered backend, for a program that opens backends by
// name outside a benchmark run (the agent).
func Lookup(name string) (Factory, error) { return lookupFactory(name) }
