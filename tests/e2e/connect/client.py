"""A real Connect client (connect-python, from PyPI) against the gateway.

Run by tests/e2e/tests/it/connect.rs as
    python client.py <gateway URL> <API key> <FileDescriptorSet path>
Message classes are built from the contracts' descriptors, so nothing is
generated. Prints one line per check and exits non-zero on the first failure.
"""
import sys

from google.protobuf import descriptor_pb2, message_factory
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo

url, key, fds_path = sys.argv[1:4]
with open(fds_path, "rb") as f:
    fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
types = message_factory.GetMessages(list(fds.file))
SERVICE = "rapport.profiles.v1.ProfilesService"


def method(name):
    return MethodInfo(
        name=name,
        service_name=SERVICE,
        input=types[f"rapport.profiles.v1.{name}Request"],
        output=types[f"rapport.profiles.v1.{name}Response"],
        idempotency_level=IdempotencyLevel.UNKNOWN,
    )


auth = {"authorization": f"Bearer {key}"}
for proto_json in (False, True):
    codec = "json" if proto_json else "proto"
    # No request compression: the gateway accepts identity bodies only.
    with ConnectClientSync(url, proto_json=proto_json, send_compression=None) as client:
        create = types["rapport.profiles.v1.CreateCustomerRequest"]()
        create.customer.display_name = f"Ada over Connect {codec}"
        create.customer.emails.add().address = f"ada-{codec}@example.com"
        created = client.execute_unary(
            request=create, method=method("CreateCustomer"), headers=auth
        ).customer
        assert created.name.startswith("customers/"), created
        print(f"{codec}: created {created.name}")

        get = types["rapport.profiles.v1.GetCustomerRequest"](name=created.name)
        got = client.execute_unary(request=get, method=method("GetCustomer"), headers=auth)
        assert got.customer.display_name == f"Ada over Connect {codec}", got
        print(f"{codec}: got it back")

        missing = types["rapport.profiles.v1.GetCustomerRequest"](
            name="customers/00000000-0000-7000-8000-000000000000"
        )
        try:
            client.execute_unary(request=missing, method=method("GetCustomer"), headers=auth)
            sys.exit(f"{codec}: a missing customer was found")
        except ConnectError as e:
            assert e.code == Code.NOT_FOUND, e
            print(f"{codec}: missing is NOT_FOUND")

        try:
            client.execute_unary(request=get, method=method("GetCustomer"))
            sys.exit(f"{codec}: a call without a key went through")
        except ConnectError as e:
            assert e.code == Code.UNAUTHENTICATED, e
            print(f"{codec}: no key is UNAUTHENTICATED")
print("ok")
