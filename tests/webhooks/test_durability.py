"""Durable, at-least-once delivery: a restart loses nothing, and replicas on PostgreSQL deliver each event once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import GatewayFactory, free_port, serve
from tests.webhooks.conftest import Receiver, admin_call, hook_config, subscribe


async def _receiver_app(rec: Receiver) -> web.Application:
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    return app


async def test_deliveries_pending_at_a_restart_are_delivered_after_it_with_the_same_id(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, tmp_path: Any) -> None:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hook")  # nothing listens there yet: every attempt fails
    cfg = hook_config(database={"url": f"sqlite:///{tmp_path}/restart.db"},
                      webhooks={"retry_schedule": [0.2] * 30})
    first = await gateway_factory(cfg)
    sub = await subscribe(http, first, rec, ["key.created"])
    for i in range(5):
        status, _ = await admin_call(http, first, "POST", "/admin/keys", {"name": f"k{i}"})
        assert status == 201
    await first.gateway.webhooks.producer.flush()
    _, before = await admin_call(http, first, "GET", f"/admin/webhooks/{sub['id']}/deliveries")
    ids = {d["event_id"] for d in before["data"]}
    assert len(ids) == 5 and all(d["status"] == "pending" for d in before["data"])
    await first.close()

    srv = await serve(await _receiver_app(rec), port)
    try:
        second = await gateway_factory(cfg)
        await rec.wait_for(lambda r: set(r.counts) == ids)
        assert all(d.verified for d in rec.got)
        await asyncio.sleep(0.5)
        assert set(rec.counts) == ids  # nothing else arrived
        _, after = await admin_call(http, second, "GET", f"/admin/webhooks/{sub['id']}/deliveries")
        for _ in range(100):
            if all(d["status"] == "delivered" for d in after["data"]):
                break
            await asyncio.sleep(0.05)
            _, after = await admin_call(http, second, "GET", f"/admin/webhooks/{sub['id']}/deliveries")
        assert {d["event_id"] for d in after["data"]} == ids and all(d["status"] == "delivered" for d in after["data"])
        assert any(d["attempts"] >= 2 for d in after["data"])  # failed before the restart, delivered after
    finally:
        await srv.close()


async def test_events_queued_at_shutdown_are_written_before_the_gateway_stops(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, receiver: Receiver, tmp_path: Any) -> None:
    cfg = hook_config(database={"url": f"sqlite:///{tmp_path}/flush.db"})
    first = await gateway_factory(cfg)
    await subscribe(http, first, receiver, ["invocation.completed"])
    client = first.openai()
    await asyncio.gather(*(client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
                           for _ in range(20)))
    await first.close()  # straight after the calls: the producer's queue is written by close()
    await gateway_factory(cfg)
    await receiver.wait_for(lambda r: len(r.counts) == 20)
    assert max(receiver.counts.values()) >= 1 and all(d.verified for d in receiver.got)


async def test_two_replicas_on_postgresql_deliver_each_event_once(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, receiver: Receiver, pg_url: str) -> None:
    cfg = hook_config(database={"url": pg_url})
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    await subscribe(http, a, receiver, ["invocation.completed"])
    for gw in (a, b):  # b learns of the subscription within refresh_interval
        for _ in range(100):
            if gw.gateway.webhooks.registry.wants_completed:
                break
            await asyncio.sleep(0.05)
    receiver.slow = [0.02] * 200  # slow enough that both dispatchers find due rows at the same time
    calls = [gw.openai().chat.completions.create(model="demo", messages=[{"role": "user", "content": str(i)}])
             for i in range(30) for gw in (a, b)]
    await asyncio.gather(*calls)
    await receiver.wait_for(lambda r: len(r.counts) == 60, timeout=20)
    await asyncio.sleep(0.5)
    assert len(receiver.got) == 60 and set(receiver.counts.values()) == {1}
    # both replicas did part of the work
    assert a.gateway.webhooks.dispatcher.attempted > 0 and b.gateway.webhooks.dispatcher.attempted > 0
    assert all(d.verified for d in receiver.got)
