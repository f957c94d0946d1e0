#!/usr/bin/env python3
"""Calls the Rapport profiles service through the gateway with no generated code.

The message and service definitions are fetched at run time from the gateway's
gRPC reflection service, so this works against any Rapport build. It creates a
customer, reads it back by resource name, then finds it by email address.

    pip install grpcio grpcio-reflection protobuf
    python3 docs/examples/reflection_client.py 127.0.0.1:8080 rk_...
"""

import argparse
import json
import uuid

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "rapport.profiles.v1.ProfilesService"


class ReflectionClient:
    """Calls unary methods of one service, with types learned by reflection."""

    def __init__(self, channel, service_name, api_key):
        # The descriptor pool asks the server for each file it needs (and the
        # files those import) the first time a symbol is looked up.
        self._pool = descriptor_pool.DescriptorPool(
            ProtoReflectionDescriptorDatabase(channel)
        )
        self._channel = channel
        self._service = self._pool.FindServiceByName(service_name)
        # Every call goes through the gateway with an API key; the key decides
        # the tenant and the scopes.
        self._metadata = (("authorization", f"Bearer {api_key}"),)

    def call(self, method_name, request):
        """Sends `request` (a dict in protobuf JSON form), returns a dict."""
        method = self._service.FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        stub = self._channel.unary_unary(
            f"/{self._service.full_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        message = json_format.ParseDict(request, request_class())
        response = stub(message, metadata=self._metadata, timeout=10)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)


def show(title, value):
    print(f"--- {title}")
    print(json.dumps(value, indent=2, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port of the gateway, e.g. 127.0.0.1:8080")
    parser.add_argument("api_key", help="an API key (rk_...), e.g. the one `rapport dev` prints")
    args = parser.parse_args()

    # A unique address per run, so the example can be run again and again
    # (emails are unique within a tenant).
    email = f"ada+{uuid.uuid4().hex[:8]}@example.com"

    with grpc.insecure_channel(args.address) as channel:
        client = ReflectionClient(channel, SERVICE, args.api_key)

        created = client.call(
            "CreateCustomer",
            {
                "customer": {
                    "display_name": "Ada Lovelace",
                    "emails": [{"address": email, "primary": True}],
                },
                # Idempotency key: a retry with the same id changes nothing.
                "request_id": str(uuid.uuid4()),
            },
        )
        show("CreateCustomer", created)
        name = created["customer"]["name"]

        show("GetCustomer", client.call("GetCustomer", {"name": name}))
        show("LookupCustomer", client.call("LookupCustomer", {"email": email}))


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as err:
        raise SystemExit(f"call failed: {err.code().name}: {err.details()}")
