#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the repository's samples.

Sources: tests/data/ec2 (EC2 answers as the VPC-in-a-box sends them), the sample strings of the
parser unit and component tests, the IMDS key layout the VPC-in-a-box serves, and, with --netlink
(root), rtnetlink dumps captured from a throwaway network namespace. Run from anywhere:
`python3 fuzz/make_seeds.py [--netlink]`. Seeds are small; the fuzzer's own finds go to fuzz/work/.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ----- EC2 answers and error bodies -------------------------------------------------------------

def ec2():
    data = os.path.join(ROOT, "tests", "data", "ec2")
    for f in sorted(os.listdir(data)):
        with open(os.path.join(data, f), "rb") as fh:
            put("ec2_xml", f, fh.read())
    ns = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
    put("ec2_xml", "return-true.xml", f"<UnassignPrivateIpAddressesResponse {ns}><requestId>r1</requestId><return>true</return></UnassignPrivateIpAddressesResponse>")
    put("ec2_xml", "return-false.xml", f"<DeleteNetworkInterfaceResponse {ns}><requestId>r2</requestId><return>false</return></DeleteNetworkInterfaceResponse>")
    put("ec2_xml", "entities.xml", "<a><b>x &amp; y &#x41;&#66;&lt;</b><c/></a>")
    put("ec2_xml", "paged.xml", f"<DescribeNetworkInterfacesResponse {ns}><requestId>r3</requestId><networkInterfaceSet/><nextToken>tok==</nextToken></DescribeNetworkInterfacesResponse>")

    put("aws_error", "ec2-throttle.xml", '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>5d5f0c40-1</RequestID></Response>')
    put("aws_error", "ec2-auth.xml", '<?xml version="1.0"?><ErrorResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>r2</RequestID></ErrorResponse>')
    put("aws_error", "ec2-capacity.xml", "<Response><Errors><Error><Code>InsufficientFreeAddressesInSubnet</Code><Message>no free addresses</Message></Error></Errors><RequestID>r3</RequestID></Response>")
    put("aws_error", "ec2-notfound.xml", "<Response><Errors><Error><Code>InvalidNetworkInterfaceID.NotFound</Code><Message>The networkInterface ID 'eni-0' does not exist</Message></Error></Errors><RequestID>r4</RequestID></Response>")
    put("aws_error", "ec2-unauthorized.xml", "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized. Encoded authorization failure message: AbC</Message></Error></Errors><RequestID>r5</RequestID></Response>")
    put("aws_error", "sts-error.xml", '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad &amp; expired</Message></Error>\n  <RequestId>abc</RequestId></ErrorResponse>')
    put("aws_error", "html.txt", "<html><body>Internal Server Error</body></html>")
    put("aws_error", "plain.txt", "not xml at all")


# ----- credentials --------------------------------------------------------------------------------

def credentials():
    put("credentials_json", "container.json", '{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"container-secret","Token":"container-session","Expiration":"2099-01-01T00:00:00Z"}')
    put("credentials_json", "imds-role.json", '{"Code":"Success","LastUpdated":"2026-11-23T16:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"2099-01-01T00:00:00Z"}')
    put("credentials_json", "error-code.json", '{"Code":"AssumeRoleUnauthorizedAccess","Message":"not allowed"}')
    put("credentials_json", "no-secret.json", '{"AccessKeyId":"ASIA"}')
    put("credentials_json", "long-lived.json", '{"AccessKeyId":"AKIA","SecretAccessKey":"s3cr3t-value-long-enough"}')
    put("credentials_json", "offset.json", '{"AccessKeyId":"ASIA","SecretAccessKey":"x","Expiration":"2026-11-23T17:08:39.123456789+02:00"}')
    put("credentials_json", "time-z.txt", "2026-11-23T17:08:39Z")
    put("credentials_json", "time-frac.txt", "2026-11-23t17:08:39.5-05:30")
    put("credentials_json", "time-space.txt", " 1970-01-01 00:00:00.000Z ")

    put("sts_xml", "assume-role.xml", """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:kube-system:aws-node</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>irsa-session-token</SessionToken>
      <SecretAccessKey>irsa-secret-key</SecretAccessKey>
      <Expiration>2099-11-23T18:00:00Z</Expiration>
      <AccessKeyId>ASIAIRSA</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""")
    put("sts_xml", "compact.xml", "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey><SessionToken>sts-session</SessionToken><Expiration>2099-01-01T00:00:00.000Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
    put("sts_xml", "error.xml", '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>IDPCommunicationError</Code><Message>try again</Message></Error><RequestId>x</RequestId></ErrorResponse>')
    put("sts_xml", "no-expiration.xml", "<R><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey></Credentials></R>")


# ----- IMDS ---------------------------------------------------------------------------------------

def imds_doc(keys):
    return "".join(f"--- {k}\n{v}\n" for k, v in keys.items())


def imds():
    m0, m1 = "02:5e:1a:00:00:01", "02:5e:1a:00:00:02"
    base = {
        "instance-id": "i-0123456789abcdef0",
        "instance-type": "m5.large",
        "placement/region": "us-west-2",
        "placement/availability-zone": "us-west-2a",
        "mac": m0,
        "local-ipv4": "10.0.1.10",
        "network/interfaces/macs/": f"{m0}/\n{m1}/",
    }
    def eni(mac, dev, card, addrs, extra=None):
        p = f"network/interfaces/macs/{mac}/"
        d = {
            p + "interface-id": f"eni-0000000000000000{dev}",
            p + "device-number": str(dev),
            p + "network-card": str(card),
            p + "subnet-id": "subnet-0a",
            p + "vpc-id": "vpc-0a",
            p + "subnet-ipv4-cidr-block": "10.0.1.0/24",
            p + "vpc-ipv4-cidr-blocks": "10.0.0.0/16\n100.64.0.0/16",
            p + "security-group-ids": "sg-01\nsg-02",
            p + "local-ipv4s": "\n".join(addrs),
        }
        d.update({p + k: v for k, v in (extra or {}).items()})
        return d
    two = dict(base)
    two.update(eni(m0, 0, 0, ["10.0.1.10", "10.0.1.11", "10.0.1.12"]))
    two.update(eni(m1, 1, 0, ["10.0.1.20"], {"ipv4-prefix": "10.0.16.32/28\n10.0.16.48/28"}))
    two["iam/security-credentials/"] = "aws-node-role"
    put("imds", "two-enis.txt", imds_doc(two))
    v6 = dict(base)
    v6["network/interfaces/macs/"] = f"{m0}/"
    v6.update(eni(m0, 0, 0, ["10.0.1.10"], {
        "ipv6s": "2001:db8:0:1::10",
        "ipv6-prefix": "2001:db8:0:1:2::/80",
        "subnet-ipv6-cidr-blocks": "2001:db8:0:1::/64",
        "vpc-ipv6-cidr-blocks": "2001:db8::/56",
    }))
    put("imds", "ipv6.txt", imds_doc(v6))
    bad = dict(base)
    bad["network/interfaces/macs/"] = f"{m0}/"
    bad.update(eni(m0, 0, 1, ["10.0.1.300"]))
    put("imds", "bad-address.txt", imds_doc(bad))
    put("imds", "minimal.txt", imds_doc({"instance-id": "i-1", "mac": m0, "local-ipv4": "10.0.0.1"}))


# ----- checkpoint ---------------------------------------------------------------------------------

def checkpoint():
    put("checkpoint", "go-written.json", '{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"2f5c1a","ifName":"eth0","ipv4":"10.0.1.3","allocationTimestamp":1700000000123456789,"metadata":{"k8sPodNamespace":"default","k8sPodName":"web-0","interfacesCount":1}},{"networkName":"_migrated-from-cri","containerID":"old","ifName":"unknown","ipv4":"10.0.1.24","allocationTimestamp":0,"metadata":{}}]}')
    put("checkpoint", "null.json", '{"version":"vpc-cni-ipam/1","allocations":null,"extra":1}')
    put("checkpoint", "prefix.json", '{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"p1","ifName":"eth0","ipv4":"10.0.16.40","allocationTimestamp":11},{"networkName":"aws-cni","containerID":"p2","ifName":"eth0","ipv4":"10.0.16.40","allocationTimestamp":12}]}')
    put("checkpoint", "ipv6.json", '{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"v6","ifName":"eth0","ipv6":"2001:db8:0:1:2::7","allocationTimestamp":1,"metadata":{"k8sPodNamespace":"ns","k8sPodName":"p"}},{"networkName":"","containerID":"","ifName":"","ipv4":"","ipv6":""}]}')
    put("checkpoint", "version2.json", '{"version":"vpc-cni-ipam/2","allocations":[]}')


# ----- CNI ----------------------------------------------------------------------------------------

def cni():
    add = {"cniVersion": "1.0.0", "name": "aws-cni", "type": "aws-cni", "vethPrefix": "eni", "mtu": "9001",
           "podSGEnforcingMode": "strict", "pluginLogFile": "/var/log/aws-routed-eni/plugin.log",
           "pluginLogLevel": "DEBUG", "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"a": "b"}}}
    put("cni_stdin", "add-1.0.0.json", json.dumps(add))
    put("cni_stdin", "add-0.4.0.json", json.dumps(dict(add, cniVersion="0.4.0", mtu=1500)))
    prev10 = {"cniVersion": "1.0.0", "interfaces": [{"name": "eni1a2b3c4d5e6", "mac": "02:00:00:00:00:01"},
              {"name": "eth0", "mac": "2", "sandbox": "/var/run/netns/cni-1"}],
              "ips": [{"address": "10.0.1.20/32", "interface": 1}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}], "dns": {"nameservers": ["10.100.0.10"]}}
    put("cni_stdin", "del-prev-1.0.0.json", json.dumps(dict(add, prevResult=prev10)))
    prev04 = dict(prev10, cniVersion="0.4.0", ips=[{"version": "4", "address": "10.0.1.20/32", "gateway": "169.254.1.1", "interface": 1}])
    put("cni_stdin", "check-prev-0.4.0.json", json.dumps(dict(add, cniVersion="0.4.0", prevResult=prev04)))
    put("cni_stdin", "gc-1.1.0.json", json.dumps({"cniVersion": "1.1.0", "name": "aws-cni", "type": "aws-cni",
        "cni.dev/valid-attachments": [{"containerID": "0123456789abcdef", "ifname": "eth0"}]}))
    put("cni_stdin", "status-1.1.0.json", '{"cniVersion":"1.1.0","name":"aws-cni","type":"aws-cni"}')
    put("cni_stdin", "bad-mtu.json", '{"cniVersion":"0.3.1","name":"n","type":"aws-cni","mtu":70000,"vethPrefix":"vlan"}')
    put("cni_stdin", "old-version.json", '{"cniVersion":"0.2.0","name":"n"}')

    env = ("CNI_COMMAND=ADD\nCNI_CONTAINERID=0123456789abcdef\nCNI_NETNS=/var/run/netns/cni-1\nCNI_IFNAME=eth0\n"
           "CNI_PATH=/opt/cni/bin\nCNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
           "K8S_POD_INFRA_CONTAINER_ID=0123456789abcdef;K8S_POD_UID=6a1f;IgnoreUnknown=1\n")
    put("cni_env", "add.env", env)
    put("cni_env", "del-no-netns.env", "CNI_COMMAND=DEL\nCNI_CONTAINERID=abc.def_1-2\nCNI_IFNAME=eth0\nCNI_ARGS=IgnoreUnknown=true;FOO=bar\n")
    put("cni_env", "check.env", "CNI_COMMAND=CHECK\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\nCNI_NETNS=/proc/1/ns/net\n")
    put("cni_env", "version.env", "CNI_COMMAND=VERSION\n")
    put("cni_env", "gc.env", "CNI_COMMAND=GC\nCNI_PATH=/opt/cni/bin\n")
    put("cni_env", "bad-ifname.env", "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0/../x\nCNI_NETNS=/n\n")
    put("cni_env", "args-unknown.env", "K8S_POD_NAME=p;OTHER=1")


# ----- environment configuration ------------------------------------------------------------------

def config():
    aws_node = {
        "ADDITIONAL_ENI_TAGS": '{"team":"net"}',
        "ANNOTATE_POD_IP": "false",
        "AWS_VPC_CNI_NODE_PORT_SUPPORT": "true",
        "AWS_VPC_ENI_MTU": "9001",
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "false",
        "AWS_VPC_K8S_CNI_EXTERNALSNAT": "false",
        "AWS_VPC_K8S_CNI_LOGLEVEL": "DEBUG",
        "AWS_VPC_K8S_CNI_LOG_FILE": "/host/var/log/aws-routed-eni/ipamd.log",
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT": "prng",
        "AWS_VPC_K8S_CNI_VETHPREFIX": "eni",
        "AWS_VPC_K8S_PLUGIN_LOG_FILE": "/var/log/aws-routed-eni/plugin.log",
        "AWS_VPC_K8S_PLUGIN_LOG_LEVEL": "DEBUG",
        "CLUSTER_NAME": "demo",
        "DISABLE_INTROSPECTION": "false",
        "DISABLE_METRICS": "false",
        "DISABLE_NETWORK_RESOURCE_PROVISIONING": "false",
        "ENABLE_IPv4": "true",
        "ENABLE_IPv6": "false",
        "ENABLE_POD_ENI": "false",
        "ENABLE_PREFIX_DELEGATION": "false",
        "NETWORK_POLICY_ENFORCING_MODE": "standard",
        "VPC_CNI_VERSION": "v1.19.0",
        "WARM_ENI_TARGET": "1",
        "WARM_PREFIX_TARGET": "1",
        "INTROSPECTION_BIND_ADDRESS": "127.0.0.1:61679",
        "IP_COOLDOWN_PERIOD": "30",
        "HTTP_TIMEOUT": "10s",
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": "10.1.0.0/16,192.168.0.0/24",
        "AWS_EXTERNAL_SERVICE_CIDRS": "172.16.0.0/12",
    }
    put("config_env", "aws-node.env", "".join(f"{k}={v}\n" for k, v in aws_node.items()))
    put("config_env", "prefix-ipv6.env", "ENABLE_PREFIX_DELEGATION=true\nENABLE_IPv6=true\nENABLE_IPv4=false\nWARM_IP_TARGET=5\nMINIMUM_IP_TARGET=10\nMAX_ENI=3\nPOD_MTU=1280\n")
    put("config_env", "bad-values.env", "WARM_ENI_TARGET=-1\nAWS_VPC_ENI_MTU=100\nAWS_VPC_K8S_CNI_VETHPREFIX=toolong\nADDITIONAL_ENI_TAGS={bad\nIP_COOLDOWN_PERIOD=1h\nENABLE_IPv6=maybe\n")
    put("config_env", "credentials.env", "AWS_REGION=us-west-2\nAWS_ROLE_ARN=arn:aws:iam::111122223333:role/aws-node\nAWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token\nAWS_STS_REGIONAL_ENDPOINTS=regional\n")
    put("config_env", "pod-identity.env", "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials\nAWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token\nAWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6\n")
    put("config_env", "endpoints.env", "AWS_ENDPOINT_URL_STS=http://127.0.0.1:5000\nAWS_EC2_ENDPOINT=http://[::1]:5001/\nAWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1338\nAWS_ACCESS_KEY_ID=AKIA\nAWS_SECRET_ACCESS_KEY=secret\n")


# ----- RPC frames ---------------------------------------------------------------------------------

def frame(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def rpc():
    version = "0.1.0"
    add = {"clientVersion": version, "call": {"method": "AddNetwork", "params": {
        "k8sPodName": "web-0", "k8sPodNamespace": "default", "k8sPodInfraContainerId": "0123456789abcdef",
        "netns": "/var/run/netns/cni-1", "containerId": "0123456789abcdef", "ifName": "eth0",
        "networkName": "aws-cni", "requiresMultiNicAttachment": False}}}
    dele = {"clientVersion": version, "call": {"method": "DelNetwork", "params": {
        "k8sPodName": "web-0", "k8sPodNamespace": "default", "containerId": "0123456789abcdef",
        "ifName": "eth0", "networkName": "aws-cni", "reason": "PodDeleted"}}}
    status = {"clientVersion": version, "call": {"method": "Status"}}
    gc = {"clientVersion": version, "call": {"method": "GcNetwork", "params": {
        "networkName": "aws-cni", "valid": [{"containerId": "c1", "ifName": "eth0"}]}}}
    put("rpc_server", "add.bin", frame(add))
    put("rpc_server", "del.bin", frame(dele))
    put("rpc_server", "status-gc.bin", frame(status) + frame(gc))
    put("rpc_server", "old-client.bin", frame(dict(status, clientVersion="0.0.1")))
    put("rpc_server", "add-body.json", json.dumps(add))
    put("rpc_server", "truncated.bin", frame(add)[:-3])
    ok_add = {"ok": {"method": "AddNetwork", "result": {"success": True, "ipAllocations": [
        {"ipv4Addr": "10.0.1.20", "ipv6Addr": "", "routeTableId": 2, "deviceNumber": 1}],
        "useExternalSnat": False, "vpcV4Cidrs": ["10.0.0.0/16"], "vpcV6Cidrs": [], "podVlanId": 0, "podEniMac": "", "podEniSubnetGw": "", "parentIfIndex": 0, "networkPolicyMode": "none"}}}
    put("rpc_client", "add-ok.bin", frame(ok_add))
    put("rpc_client", "del-ok.bin", frame({"ok": {"method": "DelNetwork", "result": {"success": True, "ipAllocations": []}}}))
    put("rpc_client", "status.bin", frame({"ok": {"method": "Status", "result": {"ready": True}}}))
    put("rpc_client", "gc.bin", frame({"ok": {"method": "GcNetwork", "result": {"released": [{"key": {"containerId": "c9", "ifName": "eth0"}, "ipv4Addr": "10.0.1.5", "k8sPodNamespace": "ns", "k8sPodName": "p"}]}}}))
    put("rpc_client", "error.bin", frame({"error": {"code": "ResourceExhausted", "message": "no address available"}}))
    put("rpc_client", "error-body.json", json.dumps({"error": {"code": "FailedPrecondition", "message": "version"}}))


# ----- netlink dumps ------------------------------------------------------------------------------

NETLINK_SETUP = [
    "ip link set lo up",
    "ip link add dummy0 type dummy",
    "ip link set dummy0 address 02:00:00:00:00:0a mtu 9001 up",
    "ip link add va type veth peer name vb",
    "ip link set va up",
    "ip addr add 10.0.1.10/24 dev dummy0",
    "ip addr add 10.0.1.11/32 dev dummy0",
    "ip -6 addr add 2001:db8::10/64 dev dummy0 nodad",
    "ip route add 10.0.1.20/32 dev va table 2",
    "ip route add default via 10.0.1.1 dev dummy0 table 2 metric 10",
    "ip route add 10.9.0.0/16 via 10.0.1.1 dev dummy0 onlink",
    "ip rule add from 10.0.1.20/32 lookup 2 priority 1536",
    "ip rule add to 10.0.1.20/32 lookup main priority 512",
    "ip rule add fwmark 0x80/0x80 lookup main priority 1024",
    "ip neigh replace 10.0.1.1 lladdr 02:00:00:00:00:01 dev dummy0 nud permanent",
    "ip -6 neigh replace 2001:db8::1 lladdr 02:00:00:00:00:02 dev dummy0 nud permanent",
    "ip link add vlan1 link dummy0 type vlan id 1",
]

RTM = {"link": (18, 17, 0), "addr": (22, 0, 0), "route": (26, 0, 0), "rule": (34, 0, 0), "neigh": (30, 0, 0)}


def capture(kind, family):
    ty = RTM[kind][0]
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    s.bind((0, 0))
    payload = struct.pack("=Bxxx", family) + b"\0" * 12  # room for any rtgen header variant
    hdr = struct.pack("=IHHII", 16 + len(payload), ty, 0x301, 1, 0)
    s.send(hdr + payload)
    out = []
    while True:
        d = s.recv(65536)
        out.append(d)
        if struct.unpack_from("=H", d, 4)[0] in (2, 3):  # the datagram holding DONE or ERROR ends it
            break
        if any(struct.unpack_from("=H", m, 4)[0] == 3 for m in split(d)):
            break
    s.close()
    return out


def split(d):
    off = 0
    while off + 16 <= len(d):
        n = struct.unpack_from("=I", d, off)[0]
        if n < 16:
            break
        yield d[off:off + n]
        off += (n + 3) & ~3


def netlink():
    ns = "fuzzseed-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for c in NETLINK_SETUP:
            subprocess.run(["ip", "netns", "exec", ns] + c.split(), check=False, capture_output=True)
        script = (
            "import sys, json; sys.path.insert(0, %r); import make_seeds as m; "
            "print(json.dumps({k: [[d.hex() for d in m.capture(k, f)] for f in (2, 10)] for k in m.RTM}))"
        ) % HERE
        res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script],
                             check=True, capture_output=True, text=True)
        dumps = json.loads(res.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    for kind, per_family in dumps.items():
        for fam, datagrams in zip(("v4", "v6"), per_family):
            for i, d in enumerate(datagrams):
                put("netlink", f"{kind}-{fam}-{i}.bin", bytes.fromhex(d))
    # An ACK, an error with extended-ack text, and a dump that failed half-way.
    req = struct.pack("=IHHII", 32, 16, 0x605, 7, 0) + b"\0" * 16
    ack = struct.pack("=IHHII", 36 + 16, 2, 0x100, 7, 0) + struct.pack("=i", 0) + req[:16]
    text = b"Invalid prefix length\0"
    tlv = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * ((4 - len(text) % 4) % 4)
    err = struct.pack("=IHHII", 16 + 4 + 16 + len(tlv), 2, 0x300, 7, 0) + struct.pack("=i", -22) + req[:16] + tlv
    done = struct.pack("=IHHII", 20, 3, 2, 7, 0) + struct.pack("=i", -16)
    put("netlink", "ack.bin", ack)
    put("netlink", "error-ext-ack.bin", err)
    put("netlink", "done-errno.bin", done)


def main():
    if "--clean" in sys.argv:
        shutil.rmtree(CORPUS, ignore_errors=True)
    ec2()
    credentials()
    imds()
    checkpoint()
    cni()
    config()
    rpc()
    if "--netlink" in sys.argv:
        netlink()


if __name__ == "__main__":
    main()
