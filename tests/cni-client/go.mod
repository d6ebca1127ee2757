// A CNI client for tests on libcni, the library container runtimes use. scripts/build-peers builds it, and the
// official cnitool of the same libcni release (a tool of this module), into the peer cache.
module vpc-cni.test/cni-client

go 1.24

require github.com/containernetworking/cni v1.3.0

tool github.com/containernetworking/cni/cnitool
