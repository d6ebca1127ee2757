// cni-client drives a CNI network configuration list through libcni, the library the kubelet's runtimes use
// (conflist chaining, prevResult, result cache, CHECK, version negotiation).
//
// It is a Go module (go.mod beside this file) on libcni v1.3, which speaks CNI 1.1: besides ADD, CHECK and DEL it
// drives STATUS and GC the way a runtime does. scripts/build-peers builds it (and the official cnitool of the same
// libcni release) into the peer cache.
//
// Usage: cni-client -conflist FILE -path DIR[:DIR...] -cache DIR
//
// It reads one JSON request per line on stdin:
//
//	{"op":"add|check|del","containerID":"…","netns":"/var/run/netns/x","ifname":"eth0",
//	 "args":[["K8S_POD_NAMESPACE","ns"],["K8S_POD_NAME","p"]],"capabilityArgs":{…}}
//	{"op":"status"}
//	{"op":"gc","validAttachments":[{"containerID":"…","ifname":"eth0"}]}
//	{"op":"version","plugin":"aws-cni"}
//
// and answers one JSON line per request:
//
//	{"ok":true,"result":{…},"micros":1234}   or   {"ok":false,"error":{"code":7,"msg":"…","details":"…"},"micros":…}
//
// where micros is the wall time of the libcni call alone.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

type request struct {
	Op             string                 `json:"op"`
	ContainerID    string                 `json:"containerID"`
	Netns          string                 `json:"netns"`
	IfName         string                 `json:"ifname"`
	Args           [][2]string            `json:"args"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
	// ValidAttachments is the GC keep-list (op "gc"); absent means "keep nothing".
	ValidAttachments []types.GCAttachment `json:"validAttachments"`
	// Plugin is the plugin type whose VERSION is asked (op "version").
	Plugin string `json:"plugin"`
}

type answer struct {
	Ok     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *types.Error    `json:"error,omitempty"`
	Micros int64           `json:"micros"`
}

func main() {
	conflist := flag.String("conflist", "", "network configuration list file")
	path := flag.String("path", "", "plugin directories, ':'-separated")
	cache := flag.String("cache", "", "libcni cache directory")
	flag.Parse()
	if *conflist == "" || *path == "" || *cache == "" {
		fmt.Fprintln(os.Stderr, "usage: cni-client -conflist FILE -path DIRS -cache DIR < requests")
		os.Exit(2)
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cni-client: load %s: %v\n", *conflist, err)
		os.Exit(2)
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*path, ":"), *cache, nil)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "cni-client: bad request line: %v\n", err)
			os.Exit(2)
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    req.ContainerID,
			NetNS:          req.Netns,
			IfName:         req.IfName,
			Args:           req.Args,
			CapabilityArgs: req.CapabilityArgs,
		}
		ctx := context.Background()
		start := time.Now()
		var res types.Result
		var versions []string
		switch req.Op {
		case "add":
			res, err = cni.AddNetworkList(ctx, list, rt)
		case "check":
			err = cni.CheckNetworkList(ctx, list, rt)
		case "del":
			err = cni.DelNetworkList(ctx, list, rt)
		case "status":
			err = cni.GetStatusNetworkList(ctx, list)
		case "gc":
			err = cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: req.ValidAttachments})
		case "version":
			var info version.PluginInfo
			if info, err = cni.GetVersionInfo(ctx, req.Plugin); err == nil {
				versions = info.SupportedVersions()
			}
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		ans := answer{Ok: err == nil, Micros: time.Since(start).Microseconds()}
		if err != nil {
			var cniErr *types.Error
			if errors.As(err, &cniErr) {
				ans.Error = cniErr
			} else {
				ans.Error = &types.Error{Code: 999, Msg: err.Error()}
			}
		} else if res != nil {
			raw, mErr := json.Marshal(res)
			if mErr != nil {
				ans.Ok = false
				ans.Error = &types.Error{Code: 999, Msg: "marshal result: " + mErr.Error()}
			}
			ans.Result = raw
		} else if versions != nil {
			raw, _ := json.Marshal(map[string][]string{"supportedVersions": versions})
			ans.Result = raw
		}
		if err := out.Encode(&ans); err != nil {
			os.Exit(3)
		}
	}
}
