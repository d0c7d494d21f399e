"""TLS on the site's client port and on the leaf link, turned on by config."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
import trustme

from pipeline.config import NatsSettings
from pipeline.messaging.natsio import client_tls
from pipeline.messaging.security import TlsFiles
from pipeline.messaging.topology import Hub, site_server
from schemas.messages import Reason
from tests.helpers import answer_across_leaf, make_frames

pytestmark = pytest.mark.integration


def _tls_files(tmp_path: Path) -> TlsFiles:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    ca.cert_pem.write_to_path(str(files.ca_file))
    return files


async def test_tls_end_to_end_and_plain_tcp_refused(tmp_path: Path) -> None:
    files = _tls_files(tmp_path)
    hub = Hub(tmp_path, tls=files)
    hub.start()
    leaf_urls = [f"nats-leaf://127.0.0.1:{p}" for p in hub.leaf_ports]
    site = site_server(tmp_path, "site1", leaf_urls, tls=files)
    site.start()
    try:
        assert site.url.startswith("tls://")
        with pytest.raises(Exception):  # noqa: B017 - any failure to talk plain TCP
            await nats.connect(
                site.url.replace("tls://", "nats://"),
                allow_reconnect=False,
                connect_timeout=2,
            )
        ca = str(files.ca_file)
        edge_nats = NatsSettings(url=site.url, tls_ca_file=ca)
        camera = await nats.connect(site.url, tls=client_tls(edge_nats))
        frames = [frame for frame, _ in make_frames(20, deadline_ms=5000)]
        results = await answer_across_leaf(
            camera,
            frames,
            edge_nats=edge_nats,
            cloud_nats=NatsSettings(url=hub.urls[0], tls_ca_file=ca),
        )
        await camera.close()
    finally:
        site.stop()
        hub.stop()
    # The leaf link speaks TLS too: cloud answers crossed it.
    assert any(r.reason is Reason.CLOUD_ANSWER for r in results)
    assert not any(r.degraded for r in results)
