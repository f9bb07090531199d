"""A gateway given Triton as a dns:/// name (how the Helm chart lists the pods of a
headless Service) finds the replica behind it and serves through it."""

from __future__ import annotations

from facefuse_client import FacefuseClient
from gateway_helpers import TEMPLATE, running_gateway, target


def test_gateway_serves_through_the_replicas_a_dns_name_resolves_to(credentials, triton, grace_hopper):
    with running_gateway(credentials, [f"dns:///{triton.grpc_url}"]) as gateway:
        assert [r.url for r in gateway.service.triton.replicas] == [triton.grpc_url]
        with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
            poster = client.fuse(grace_hopper, TEMPLATE)
        assert poster.image[:2] == b"\xff\xd8"
        assert gateway.service.triton.replicas[0].attempts == 1
