"""The CSMS process: the store writer, the listener, and the registry of live stations."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

import peewee as pw
import trio

from lite_csms import passwords
from lite_csms.budget import served
from lite_csms.budget.meter import ConnectionMeter
from lite_csms.budget.policy import BudgetPolicy
from lite_csms.budget.precedence import BootsFirst
from lite_csms.budget.recorder import LiveConnection, TrafficRecorder
from lite_csms.config import Settings
from lite_csms.db.models import Station
from lite_csms.db.reader import StoreReader
from lite_csms.db.writer import StoreWriter, Submitted, WriterClosed
from lite_csms.handlers import authorization, provisioning, reservation
from lite_csms.metrics import ServerMetrics
from lite_csms.net import profiles, rotation
from lite_csms.net.commands import CommandSender
from lite_csms.net.connection import (
    CLOSE_INTERNAL_ERROR,
    ORDERLY_CLOSE_CODES,
    StationConnection,
)
from lite_csms.net.control import ServerControl
from lite_csms.net.deflate import options_from as deflate_options
from lite_csms.net.handshake import (
    BareSegment,
    BasicCredentials,
    InvalidStationId,
    basic_credentials,
    choose_link,
    station_id_from_path,
)
from lite_csms.net.idle import IdleWatch
from lite_csms.net.kdf import CredentialCache, KdfQueue, Overloaded, Refused
from lite_csms.net.kdf import verify as kdf_verify
from lite_csms.net.limits import (
    AT_CAPACITY_BODY,
    Caps,
    cap_retry_after,
    effective_cap,
    raise_descriptor_limit,
)
from lite_csms.net.listener import (
    ListenOptions,
    WebSocketListener,
    decline_deflate,
    slot_of,
    tcp_timestamps_note,
)
from lite_csms.net.lite_link import LiteCodec, codec_for, lite_name
from lite_csms.net.ports import HeldPorts, hold_ports
from lite_csms.net.tally import Tally
from lite_csms.net.throttle import GuessThrottle, host_of, source_key
from lite_csms.net.tls import server_context
from lite_csms.net.upgrade import HandshakeRequest
from lite_csms.net.websocket import WebSocket
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations.cost_updates import CostUpdates
from lite_csms.operations.progress import ProgressService
from lite_csms.versions import StationContext

log = logging.getLogger("lite_csms.net")

# Close code for a handshake that agreed no subprotocol (RFC 6455: protocol error).
CLOSE_PROTOCOL_ERROR = 1002
# scrypt uses 16 MiB a check; this bounds the memory a reconnect storm can take.
PASSWORD_CHECKS_AT_ONCE = 2
# On shutdown every station is told 1001 Going Away, all at once; a station that has not
# answered the close this many seconds after the first frame went out has its TCP
# connection shut without waiting longer. Shutdown waits this, not this per station.
GOING_AWAY_TIMEOUT = 1.0
# The stop's second bound: connections cut off (TCP shut) after GOING_AWAY_TIMEOUT end by
# themselves as their readers see the end, as fast as the loop gets to them (10,000 take
# a few seconds on a busy machine); only one still running after this long (a handler
# waiting for a slow disk) is cancelled.
ABORT_TIMEOUT = 5.0
# While connections end in the stop, what the ended ones leave is written every this many
# seconds once at least this many stations are waiting to be written offline.
STOP_WRITE_EVERY = 0.25
STOP_WRITE_AT_LEAST = 1000
# The stop's fast exit ends the stations still connected in the books this many at a time,
# each chunk's rows queued for the writer before the next (_leave_open).
LEAVE_OPEN_CHUNK = 1000
# The fast exit books the stations that have answered every this many close frames sent,
# and at every poll of the window (_book_answered).
BOOK_EVERY = 250
# The stop's fast exit waits this long for its last writes to commit, with the loop held.
LAST_WRITE_TIMEOUT = 60
# The writer's page cache during the stop's fast exit, KiB. Its writes touch every station's
# pages of the traffic tables and the station table (10,000 stations: about 25 MiB); with
# the usual db_cache_kib most pages were read again for each chunk, a third of the
# writer's time. The process exits after, so the memory is not kept.
STOP_CACHE_KIB = 64 * 1024
# How often the stop looks whether every station has answered its close.
STOP_POLL = 0.02
# The cyclic collector's youngest generation is collected after this many allocations
# (Python's default is 700) while the server runs. A burst of connections allocates much
# that lives a moment (a handshake's parser, a call's scopes and events): at 700 the
# collector walked those still in flight and promoted them, and collecting cost about 1 ms
# of CPU per first boot of 1,000 stations arriving, about 0.2 ms at 10,000. Cyclic garbage
# waits a little longer: at most this many allocations.
GC_YOUNG_THRESHOLD = 10_000
# When the server is cancelled without stop(), its readers are gone: no close answer can
# arrive, so this only bounds sending the close frame.
CANCELLED_CLOSE_TIMEOUT = 0.5


def freeze_start_up_heap() -> None:
    """Move every object alive once the server listens out of the cyclic collector's reach.

    Those are most of the objects the process will ever hold (modules, types, functions,
    schemas and their compiled validators: 50,000 or so) and they live as long as it does,
    yet each full collection walked them all again: a pause of 50-90 ms of CPU (on the
    2-core VM of docs/PERFORMANCE.md) for every station waiting on the event loop, every
    10-15 s under load. What is allocated later (connections, sessions, jobs) is collected
    as before. Like the stop's freeze, `_run` unfreezes them at its end (a server run in
    process, as in the tests)."""
    gc.freeze()


class CsmsServer:
    def __init__(self, settings: Settings, db: pw.SqliteDatabase,
                 held: HeldPorts | None = None) -> None:
        """`held`: ports already bound (see net/ports.py); otherwise run() binds them first."""
        self.settings = settings
        authorization.set_free_charging(settings.free_charging)
        self._held = held
        self._stopping = trio.Event()
        self._frozen = False
        # Stations written offline by this stop so far (_write_while_stopping and the last).
        self._offline_written = 0
        self._periodic_scope = trio.CancelScope()
        # Set by the stop's fast exit once it has written the final state itself.
        self._final_written = False
        # Called by a stop, instead of ending the connections one by one, once every
        # station has had its 1001 and its time to answer, the final state is durable and
        # the store closed: the CLI ends the process there (os._exit), and the kernel
        # closes the sockets. None (in process): the connections end as usual.
        self.exit_when_durable: Callable[[], None] | None = None
        # The connections the fast exit left open (their meters' LiveConnections).
        self._left_open: list[LiveConnection] = []
        # The fast exit's early offline jobs and the stations each writes (_submit_ended);
        # set while ended connections' rows are queued as they come (the close window).
        self._early_offline: list[tuple[Submitted, dict[str, datetime]]] = []
        self._writing_ended = False
        # Before the writer's thread takes the connection (it is used by one thread at a time).
        db.execute_sql(f"PRAGMA cache_size = -{settings.db_cache_kib}")
        self._db = db
        self.store = StoreWriter(db)
        self.reader = (None if db.database == ":memory:"
                       else StoreReader(db.database, cache_kib=settings.db_cache_kib))
        self.connections: dict[str, StationConnection] = {}
        # Stations whose connection ended in the shutdown: written offline in one store job
        # once all have ended, instead of one job each (station id: last seen).
        self._offline_at_exit: dict[str, datetime] = {}
        self.commands = CommandSender(self.store, self.connections, self.reader)
        self.boots_first = BootsFirst(lambda: self.listener.limits.handshaking > 0,
                                      settings.budget_policy_boots_first)
        self.policy = BudgetPolicy(self.store, settings, self.commands, reader=self.reader,
                                   boots_first=self.boots_first)
        self.progress = ProgressService(self.store, self.commands, self.connections, settings)
        self.costs = CostUpdates(self.store, self.commands, settings)
        self.rotation = rotation.PasswordRotation(self.store, self.commands, settings)
        self._hooks = _StationHooks(self)
        self.kdf = KdfQueue(PASSWORD_CHECKS_AT_ONCE)
        self.credentials = CredentialCache()
        self.throttle = GuessThrottle()
        self.traffic = TrafficRecorder(self.store,
                                       retention_days=settings.traffic_hourly_retention_days)
        self.tally = Tally()
        # Idle stations' readers park here (net/idle.py).
        self.idle = IdleWatch()
        ssl_context = None
        if settings.tls_cert:
            ssl_context = server_context(settings.tls_cert, settings.tls_key,
                                         ticket_lifetime=settings.tls_ticket_lifetime,
                                         client_ca=settings.tls_client_ca)
        self.listener = WebSocketListener(
            ListenOptions(
                host=settings.host, port=settings.port,
                max_message_size=settings.max_message_size,
                handshake_timeout=settings.handshake_timeout,
                keepalive_idle=settings.tcp_keepalive_idle,
                keepalive_interval=settings.tcp_keepalive_interval,
                keepalive_count=settings.tcp_keepalive_count,
                user_timeout=settings.tcp_user_timeout,
                deflate=deflate_options(settings),
                caps=_caps(settings),
            ),
            self.handle_request,
            ssl_context=ssl_context,
            on_closed=self._connection_closed,
            on_handshake=self.tally.handshake,
        )
        self.ports: list[int] = []
        self.admin_port: int | None = None
        # Last: it reads the parts above when Prometheus scrapes /metrics.
        self.metrics = ServerMetrics(self)
        # What the admin API and the web page may ask of this server (lite_csms/control.py).
        self.control = ServerControl(self)

    async def run(self, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until stop() or cancellation. Raises PortBusy, having touched nothing, when
        a port is taken: the database is shared with whoever holds it."""
        held = self._held or hold_ports(
            self.settings.host, self.settings.port,
            self.settings.admin_host if self.settings.admin_enabled else None,
            self.settings.admin_port)
        self._held = None
        try:
            await self._run(held, task_status)
        finally:
            held.close()

    def stop(self) -> None:
        """Begin an orderly shutdown: every station gets 1001 Going Away, then run() returns."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def _run(self, held: HeldPorts, task_status: trio.TaskStatus[list[int]]) -> None:
        thresholds = gc.get_threshold()
        try:
            gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
            await self._serve_until_stopped(held, task_status)
        finally:
            gc.set_threshold(*thresholds)

    async def _serve_until_stopped(self, held: HeldPorts,
                                   task_status: trio.TaskStatus[list[int]]) -> None:
        async with trio.open_nursery() as writer_nursery:
            await writer_nursery.start(self.store.serve)
            # Beside the writer: it outlives every connection, whose readers it wakes.
            await writer_nursery.start(self.idle.run)
            if self.reader is not None:
                self.reader.open()
            try:
                await self.store.run(provisioning.mark_all_offline)
                await self.store.run(partial(served.record, self.settings,
                                             timestamps.now_utc()))
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(self.listener.serve, held.ocpp)
                    self.ports = sorted({lst.socket.getsockname()[1] for lst in listeners})
                    await nursery.start(self.progress.run)
                    await nursery.start(self.costs.run)
                    await nursery.start(self._periodic)
                    if held.admin is not None:
                        # hypercorn takes the descriptor over and closes it itself.
                        fd, held.admin = held.admin.detach(), None
                        self.admin_port = await nursery.start(self._serve_admin, fd)
                    nursery.start_soon(self._stop_when_asked, nursery.cancel_scope)
                    log.info("serving OCPP-J on %s port %s", self.settings.host, self.ports)
                    if (note := tcp_timestamps_note()) is not None:
                        log.info("%s", note)
                    freeze_start_up_heap()
                    self._frozen = True
                    task_status.started(self.ports)
            finally:
                # Only now: every connection above has ended. Their offline state in one job,
                # then their traffic, then the writer stops.
                if not self._final_written:
                    with trio.CancelScope(shield=True):
                        await self._write_final_state()
                self.idle.stop()
                self.store.close()
                if self.reader is not None:
                    self.reader.close()
                if self._frozen:
                    gc.unfreeze()

    async def _periodic(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
        """The periodic work: presence and traffic written, the budget policy. The stop ends
        it first: its own last writes cover what these would write, and a periodic write
        of 10,000 stations must not fall in the middle of the stop. (A write already
        submitted still commits: StoreWriter.run waits for it shielded.)"""
        async with trio.open_nursery() as nursery:
            self._periodic_scope = nursery.cancel_scope
            nursery.start_soon(self._flush_last_seen)
            nursery.start_soon(self.traffic.run, self.settings.traffic_flush_interval)
            nursery.start_soon(self.policy.run, self.connections,
                               self.settings.budget_policy_interval)
            task_status.started()

    async def _stop_when_asked(self, scope: trio.CancelScope) -> None:
        await self._stopping.wait()
        self._periodic_scope.cancel()
        # The collector would walk every object of 10,000 connections again and again while
        # they unwind (half the stop's CPU); what they leave is freed by reference counts,
        # and any cycles among them wait for the exit (or for _run's unfreeze, in process).
        gc.freeze()
        self._frozen = True
        # No new station from here on: the listening sockets close, handshakes under way
        # are refused with 503 (handle_request).
        self.listener.stop_accepting(leave_open=self.exit_when_durable is not None)
        connections = list(self.connections.values())
        log.info("stopping: closing %d station connections", len(connections))
        fast = self.exit_when_durable is not None
        if fast:
            # What is counted already (the set-up of connections not yet flushed) is
            # queued first: the writer's thread writes it, mostly without the GIL, while
            # this thread sends the close frames and ends the connections in the books,
            # and the last write, with the loop held, carries only the rest
            # (docs/PERFORMANCE.md, "Graceful stop").
            with contextlib.suppress(WriterClosed):
                self.store.submit(partial(self._db.execute_sql,
                                          f"PRAGMA cache_size = -{STOP_CACHE_KIB}"))
                self.traffic.counted_write()
                # And what the connections that end leave, as they end.
                self._writing_ended = True
        started = trio.current_time()
        deadline = started + GOING_AWAY_TIMEOUT
        async with trio.open_nursery() as writing:
            if not fast:
                # (With the fast exit, what ended connections leave is queued as they end:
                # _connection_closed.)
                writing.start_soon(self._write_while_stopping)
            async with trio.open_nursery() as closing:
                # Every close frame from this one loop, no task or wait per station (10,000
                # tasks cost seconds); only a TLS connection or a full socket buffer takes
                # one.
                if fast:
                    # A station's answer is noted by the idle watch, not by waking its reader.
                    self.idle.hold()
                unanswered: list[StationConnection] = []
                for index, connection in enumerate(connections, 1):
                    if fast and connection.meter is not None:
                        # Its last reading is taken at once, at its end or at the exit.
                        connection.meter.read_once_at_end()
                    rest = connection.going_away_now(exit_next=fast)
                    if rest is not None:
                        closing.start_soon(connection.going_away, deadline, rest)
                    unanswered.append(connection)
                    if fast and not index % BOOK_EVERY:
                        # The stations that answered meanwhile are ended in the books now,
                        # beside the sending, not all after the window; the checkpoint lets
                        # the readers the answers woke note them (going_away_now: no reader
                        # with its frame sent ends its connection the long way).
                        unanswered = self._book_answered(unanswered)
                        await trio.sleep(0)
                sent = trio.current_time() - started
                if fast:
                    # A station is done once its answer has arrived: it is ended in the
                    # books (going_away_now, _book_answered) as the window goes on. Only
                    # those that had not answered are looked at again.
                    waiting = await self._book_until_answered(unanswered, deadline)
                    # Every station has its 1001 and has had its time to answer. From here
                    # to the exit no checkpoint (leaving this nursery would be one): every
                    # reader woken by then would end its connection the long way, 0.3 ms
                    # or more each. The rest are ended in the books only, from one loop,
                    # and the process exits once that is durable (docs/PERFORMANCE.md,
                    # "Graceful stop").
                    log.info("stopping: 1001 sent to %d stations in %.2f s, %d answered the "
                             "close, %d left open for the exit, in %.2f s", len(connections),
                             sent, len(connections) - len(waiting), len(waiting),
                             trio.current_time() - started)
                    self._leave_open()
                    self._exit_when_durable()
                else:
                    # Each station's answering close frame ends its connection.
                    waiting = await _until_stopped(connections, deadline)
            answered = len(connections) - len(waiting)
            if fast:
                # Only when the hook returned (a test): the usual end.
                for connection in connections:
                    connection.exit_withdrawn()
                self.idle.release()
                for connection in waiting:
                    connection.ws.shut_now()
                left = await _until_stopped(waiting, trio.current_time() + ABORT_TIMEOUT)
            else:
                # The rest are cut off: their TCP connections are shut (a FIN after the
                # close frame already queued), so each reader sees the end and its task
                # ends as after any lost peer. Cancelling them instead raised a Cancelled
                # through every task's stack and its nursery, and again at each checkpoint
                # of its cleanup (docs/PERFORMANCE.md, "Graceful stop").
                for connection in waiting:
                    connection.ws.shut_now()
                left = await _until_stopped(waiting, trio.current_time() + ABORT_TIMEOUT)
                # A write under way commits (StoreWriter.run waits for it shielded); what
                # has not been submitted is left to the final write.
                writing.cancel_scope.cancel()
        log.info("stopping: 1001 sent to %d stations in %.2f s, %d answered the close, %d "
                 "cut off, %d cancelled, in %.2f s", len(connections), sent, answered,
                 len(waiting) - len(left), len(left), trio.current_time() - started)
        # Cancels what is left: a connection still busy, a handler still waiting for the
        # store (its job commits, shielded, but its answer is not sent), the server's tasks.
        scope.cancel()

    async def _book_until_answered(self, waiting: list[StationConnection], deadline: float
                                   ) -> list[StationConnection]:
        """The fast exit's window: the stations of `waiting` that answer are booked
        (_book_answered) every STOP_POLL seconds until all have answered or `deadline` (trio
        time) has passed; returns those that have not answered."""
        with trio.move_on_at(deadline) as window:
            while waiting := self._book_answered(waiting):
                await trio.sleep(STOP_POLL)
        if window.cancelled_caught:
            # Those that answered since the last poll are booked as answered, not as left.
            waiting = self._book_answered(waiting)
        return waiting

    def _book_answered(self, connections: list[StationConnection]
                       ) -> list[StationConnection]:
        """The fast exit: each station of `connections` whose close answer has arrived and
        that is not ended in the books yet is ended there now, as _leave_open ends the rest:
        its FIN, its answer read and counted, its last kernel reading; offline as of its last
        message. Its socket stays open for the exit (drained first, as the others). Returns
        the connections that have not answered."""
        traffic = self.traffic
        booked, unanswered = [], []
        answered = self._has_answered
        for connection in connections:
            if not answered(connection):
                unanswered.append(connection)
                continue
            if connection.meter is None:
                continue
            live = traffic.live_of(connection.meter)
            if live is None:
                continue  # already booked, or ended
            self._forget_at_exit(connection)
            booked.append(live)
        if booked:
            traffic.close_now(booked, "server shutting down")
            self._left_open.extend(booked)
            if len(self._offline_at_exit) >= LEAVE_OPEN_CHUNK:
                self._submit_ended()
        return unanswered

    def _has_answered(self, connection: StationConnection) -> bool:
        """The fast exit: whether the station's close answer has arrived (its reader noted
        it, or the idle watch holds it), or its connection has ended."""
        if connection.answered:
            return True
        sock = connection.meter.sock if connection.meter is not None else None
        return sock is not None and sock.fileno() in self.idle.ready

    def _leave_open(self) -> None:
        """The stations still connected are ended in the books: offline as of their last
        message, their traffic counted as if they had closed now (TrafficRecorder.close_now).
        One loop, LEAVE_OPEN_CHUNK stations at a time, each chunk's rows queued for the
        writer's thread at once: every large write is a few statements of a thousand rows
        (db/bulk.py), so that thread writes with the GIL released beside this loop, and the
        last write (_exit_when_durable) carries only the last chunk. (Written row by row,
        the writer's thread waited for the GIL at every row: 10,000 stations took three
        times as long.)"""
        self._writing_ended = False
        for connection in list(self.connections.values()):
            if connection.close_code is None:
                # Registered after the stop's snapshot: it gets its 1001 too.
                connection.going_away_now()
            self._forget_at_exit(connection)
        lives = self.traffic.open_connections()
        self._left_open.extend(lives)
        self._submit_ended()
        for start in range(0, len(lives), LEAVE_OPEN_CHUNK):
            self.traffic.close_now(lives[start:start + LEAVE_OPEN_CHUNK], "server shutting down")
            if start + LEAVE_OPEN_CHUNK < len(lives):
                self._submit_ended()

    def _connection_closed(self, meter: ConnectionMeter) -> None:
        """A connection is gone (the listener's on_closed): its traffic taken; in the stop's
        close window, what the ended ones left is queued for the writer every
        STOP_WRITE_AT_LEAST stations, from here rather than a task, which would run only
        once the loop's batch of 10,000 woken readers is through."""
        self.traffic.closed(meter)
        if self._writing_ended and len(self._offline_at_exit) >= STOP_WRITE_AT_LEAST:
            self._submit_ended()

    def _submit_ended(self) -> None:
        """The fast exit: the offline state of the stations ended so far and what their
        connections left, queued as store jobs without waiting (StoreWriter.submit). Each
        statement is an UPDATE or an additive upsert: these jobs and the last write add up
        to the one write they replace; a lost job's rows are written again by the last."""
        seen, self._offline_at_exit = self._offline_at_exit, {}
        try:
            if seen:
                job = self.store.submit(partial(_mark_offline_at_exit, seen))
                self._early_offline.append((job, seen))
                self._offline_written += len(seen)
            self.traffic.ended_write()
        except WriterClosed:
            # The last write finds the store closed too, and says so.
            self._writing_ended = False

    def _exit_when_durable(self) -> None:
        """The stop's fast exit, once every connection is ended in the books (_leave_open):
        the last writes queued behind every store job queued so far, the store closed and
        waited for, then exit_when_durable is called. The trio loop is held from the loop
        in _leave_open to the exit: nothing else is to run, and the writer's thread then
        never waits for the GIL. A CALLRESULT is never at stake: no message follows a close
        frame, so a handler still waiting for its job cannot answer."""
        assert self.exit_when_durable is not None
        started = time.perf_counter()
        seen, self._offline_at_exit = self._offline_at_exit, {}
        early, self._early_offline = self._early_offline, []
        self._offline_written += len(seen)
        lost = self.store.lost_batches

        def offline() -> None:
            # With the stations of every early job that failed or whose commit was lost.
            rows = {}
            for job, chunk in early:
                if job.error is not None:
                    rows.update(chunk)
            rows.update(seen)
            _mark_offline_at_exit(rows)

        try:
            self.store.submit(offline)
            self.store.submit(self.traffic.last_write())
        except WriterClosed:
            log.warning("the store is closed: the stations' offline state and traffic since "
                        "the last flush are not written")
        self.store.close()
        if not self.store.wait_stopped(LAST_WRITE_TIMEOUT):
            log.error("the last writes did not commit within %d s; exiting without them",
                      LAST_WRITE_TIMEOUT)
        elif self.store.lost_batches > lost:
            log.warning("the last writes were lost: %s", self.store.failure)
        self._final_written = True
        log.info("stopped: %d stations written offline (%d of them before the last write), "
                 "traffic flushed, in %.2f s", self._offline_written,
                 self._offline_written - len(seen), time.perf_counter() - started)
        if self.reader is not None:
            self.reader.close()
        # Close answers that arrived during the write: unread, they would turn the exit's
        # FIN into a reset.
        for live in self._left_open:
            live.meter.drain()
        self.exit_when_durable()

    async def _write_final_state(self) -> None:
        """The offline state of the stations left and the traffic, as the stop's last
        writes (shielded by the caller)."""
        started = trio.current_time()
        offline = await self._write_offline_at_exit()
        with trio.move_on_after(10):
            await self.traffic.flush()
        log.info("stopped: %d stations written offline (%d of them while the others "
                 "ended), traffic flushed, in %.2f s", self._offline_written,
                 self._offline_written - offline, trio.current_time() - started)

    async def _write_while_stopping(self) -> None:
        """While 10,000 connections end, the writer thread (SQLite, mostly without the GIL)
        writes the offline state and the traffic of those already ended, in chunks, so that
        what is left after the last one is small. Every row is an UPDATE or an additive
        upsert: chunks add up to the one write they replace."""
        while True:
            await trio.sleep(STOP_WRITE_EVERY)
            if len(self._offline_at_exit) < STOP_WRITE_AT_LEAST:
                continue
            await self._write_offline_at_exit()
            try:
                await self.traffic.flush(live=False)
            except Exception as exc:  # the counts are put back for the final flush
                log.warning("traffic flush during the stop failed: %s", exc)
                return

    async def _write_offline_at_exit(self) -> int:
        seen, self._offline_at_exit = self._offline_at_exit, {}
        if not seen:
            return 0
        self._offline_written += len(seen)
        try:
            await self.store.run(partial(provisioning.mark_all_disconnected, seen))
        except Exception as exc:  # a full disk: the next start marks every station offline
            log.warning("the offline state of %d stations cannot be stored: %s", len(seen),
                        exc)
        except BaseException:
            # Cancelled before the job was queued (_write_while_stopping): the final write
            # takes them.
            self._offline_at_exit = {**seen, **self._offline_at_exit}
            self._offline_written -= len(seen)
            raise
        return len(seen)

    async def _serve_admin(self, fd: int, *,
                           task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                           ) -> None:
        """The admin API and the web page on the listening socket `fd`. The socket listens
        from start-up, but hypercorn, starlette and the routes (about 7 MB, a sixth of an
        idle server's RSS) are imported only once a first client connects: its connection
        waits in the backlog meanwhile, and is the first one hypercorn accepts
        (docs/PERFORMANCE.md, idle RSS)."""
        sock = socket.socket(fileno=fd)
        port = int(sock.getsockname()[1])
        log.info("admin API on http://%s:%d (and the web page)", self.settings.admin_host, port)
        task_status.started(port)
        try:
            await trio.lowlevel.wait_readable(sock)
        except BaseException:
            sock.close()  # stopped before anyone asked
            raise
        from hypercorn.config import Config
        from hypercorn.trio import serve

        from lite_csms.admin.app import build_app
        from lite_csms.web.mount import one_port

        app = one_port(build_app(self.control), _web_app_when_asked(self.control))
        config = Config()
        # hypercorn takes the descriptor over and closes it itself.
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("lite_csms.admin")
        await serve(app, config)

    async def _flush_last_seen(self) -> None:
        # Presence is kept in memory and written in one batch a minute: a row update per
        # heartbeat would cost a disk write per station per message.
        while True:
            await trio.sleep(self.settings.last_seen_flush_interval)
            seen = {sid: conn.last_seen for sid, conn in self.connections.items()}
            if seen:
                await self.store.run(partial(provisioning.record_last_seen, seen))
            await self.store.run(partial(reservation.expire_due, timestamps.now_utc()))

    # ---- handshake -------------------------------------------------------------------------
    async def handle_request(self, request: HandshakeRequest, meter: ConnectionMeter
                             ) -> Callable[[], Awaitable[None]] | None:
        """Answer the handshake; once accepted, what serves the station, which the listener
        runs past the handshake's scope and frames (net/listener.py)."""
        if self.stopping:
            await request.reject(503, extra_headers=_retry_after(cap_retry_after()),
                                 body=PUBLIC_BODIES[503].encode())
            return None
        try:
            station_id = station_id_from_path(request.path)
        except BareSegment as exc:
            # `/CS-1/` names CS-1 if it is registered; `/ocpp/` never invents a station "ocpp",
            # not even with auto-registration on.
            station_id = exc.candidate
            if await self._station(station_id) is None:
                log.warning("refused %s from %s: %s", request.path[:80], request.remote, exc)
                await request.reject(400, body=str(exc).encode())
                return None
        except InvalidStationId as exc:
            log.warning("refused %s from %s: %s", request.path[:80], request.remote, exc)
            await request.reject(400, body=str(exc).encode())
            return None
        # Read once for the whole handshake: the password check and the readiness below.
        station = await self._station(station_id)
        login = rotation.Login()
        refusal = await self._authenticate(station_id, station, request,
                                           profiles.presented(meter), login)
        limits = self.listener.limits
        slot = slot_of(request)
        if (refusal is None and slot is not None
                and (why := limits.connect(slot, replaces=station_id in self.connections))
                is not None):
            limits.refused += 1
            limits.log.warn("%s: refused %s with 503: %s", station_id, request.remote, why)
            await request.reject(503, extra_headers=_retry_after(cap_retry_after()),
                                 body=AT_CAPACITY_BODY)
            return None
        if refusal is not None:
            status, reason, headers = refusal
            log.warning("%s: refused %s with %d: %s", station_id, request.remote, status,
                        reason)
            # The reason goes to the log only: sent, it would tell unknown ids from known.
            body = PUBLIC_BODIES.get(status, reason)
            if isinstance(reason, WrongCredential):
                # A charger with a wrong password burns its owner's data; only a credential
                # checked and found wrong is charged, capped, so an outsider cannot drain a
                # station's budget with refusals (docs/SECURITY.md).
                self.traffic.refused(station_id, meter)
            # A copy: trio-websocket appends its Content-Length to the list it is given.
            await request.reject(status, extra_headers=list(headers), body=body.encode())
            return None
        chosen = choose_link(request.proposed_subprotocols, self.settings.subprotocols,
                             self.settings.lite)
        if chosen is None:
            # OCPP-J Part 4: complete the handshake without a subprotocol, then close at once.
            log.warning("%s: no supported subprotocol in %s from %s", station_id,
                        list(request.proposed_subprotocols), request.remote)
            ws = await request.accept()
            await ws.aclose(CLOSE_PROTOCOL_ERROR, "no supported OCPP version proposed")
            return None
        version, lite = chosen
        codec: LiteCodec | None = None
        subprotocol = version.subprotocol
        if lite:
            codec, subprotocol = codec_for(version), lite_name(version)
            # The lite link compresses each frame with a shared dictionary; a per-connection
            # deflate window would cost memory for little more (codecs/SPEC.md section 4).
            decline_deflate(request, meter)
        # Only what the connection needs of the row: an idle station keeps this frame alive.
        registration, booted_before = ((None, False) if station is None else
                                       (station.registration, station.last_boot_at is not None))
        confirms = station is not None and rotation.needs_confirming(station, login)
        station = None
        ws = await request.accept(subprotocol=subprotocol)
        live = self.traffic.opened(station_id, subprotocol, meter)
        return partial(self._serve_station, ws, station_id, registration, booted_before,
                       version, live, codec, login, confirms)

    async def _station(self, station_id: str) -> Station | None:
        """The committed row, read beside the writer rather than queued behind it
        (db/reader.py); through the writer only when that read fails."""
        if self.reader is not None:
            try:
                return self.reader.station(station_id)
            except sqlite3.Error as exc:
                log.warning("%s: station read failed, asking the writer: %s", station_id, exc)
        return await self.store.run(lambda: Station.get_or_none(Station.id == station_id))

    async def _authenticate(
        self, station_id: str, station: Station | None, request: HandshakeRequest,
        seen: profiles.Presented, login: rotation.Login | None = None,
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Security profiles 1 and 2: HTTP Basic auth with the station id as username; 3: the
        TLS client certificate, whose subject CN must be the station id (net/profiles.py).

        Returns None to accept, or (HTTP status, reason, headers). An unknown station id, a
        missing or mismatched username and a wrong password all get the same 401 with the same
        body and headers, so station ids cannot be enumerated; the reason goes to the log only
        (`reveal_unknown_stations` restores 404 for debugging). 429 + Retry-After for a
        throttled guesser, 503 + Retry-After when the password checks queued would outlast
        the handshake (docs/SECURITY.md). Runs under the listener's handshake deadline.
        """
        credentials = basic_credentials(request.headers)
        source = source_key(host_of(request.remote))
        blocked = (seen.certificate is None and credentials is not None
                   and credentials.username == station_id
                   and not self.credentials.knows(station_id, credentials.password)
                   and self.throttle.source_wait(source))
        if blocked and credentials is not None and not _fast_match(station, credentials):
            # Refused before the KDF: a guesser's retries cost a read. A generated password
            # (checked in microseconds) still gets in, so a guesser behind a station's
            # carrier NAT cannot lock it out, not even after a restart emptied the cache.
            return (429, f"{'' if station else UNKNOWN_STATION + '; '}too many wrong "
                    "passwords from this address", _retry_after(blocked))
        if (station is None or station.password_hash is not None or credentials is not None
                or seen.certificate is not None):
            # A credential to check, a registration to write or a refusal timed as a check:
            # each may wait, so a peer that leaves meanwhile is noticed (net/upgrade.py). A
            # known station without a password is decided here and now, unwatched.
            await request.watch_peer()
        if station is None:
            if not self.settings.auto_register:
                if self.settings.reveal_unknown_stations:
                    return 404, UNKNOWN_STATION, []
                return await self._as_if_known(station_id, credentials, source)
            decision = profiles.decide(self.settings.security_profile_default, station_id,
                                       seen, organization=self.settings.tls_client_organization)
            if decision.refusal is not None:
                return await self._as_if_known(station_id, credentials, source,
                                               f"{UNKNOWN_STATION}; {decision.refusal}")
            if decision.certified:
                await self.store.run(lambda: profiles.auto_register_certified(station_id))
                log.info("%s: auto-registered as pending, security profile 3", station_id)
                return None
            presented = None if credentials is None else credentials.password
            hashed = None
            if presented:
                try:
                    hashed = await self.kdf.run(passwords.hash_password, presented)
                except Overloaded as exc:
                    return 503, str(exc), _retry_after(exc.retry_after)
            await self.store.run(lambda: provisioning.auto_register(station_id, hashed))
            log.info("%s: auto-registered as pending", station_id)
            return None
        decision = profiles.decide(
            profiles.effective(station.security_profile, self.settings.security_profile_default),
            station_id, seen, organization=self.settings.tls_client_organization,
            auto_raise=self.settings.security_profile_auto_raise)
        if decision.refusal is not None:
            # Profile 2 on plain TCP, profile 3 without a certificate: the same work and
            # answer as a wrong password, or the timing would tell which ids have profile 2/3.
            return await self._as_if_known(station_id, credentials, source, decision.refusal)
        if decision.certified:
            # Basic auth, if sent, is ignored: the certificate is the credential.
            if decision.raise_to is not None and await self.store.run(
                    partial(profiles.raise_profile, station_id, decision.raise_to)):
                log.info("%s: raised to security profile %d by its client certificate",
                         station_id, decision.raise_to)
            return None
        stored: str | None = station.password_hash
        if stored is None:
            return None
        if credentials is None:
            return _unauthorized("password required")
        if credentials.username != station_id:
            return _unauthorized("username does not match the station id in the path")
        login = login if login is not None else rotation.Login()
        password = credentials.password
        # The password, a rotation's pending ones and its chosen fallback (net/rotation.py):
        # the cache and the fast hashes first, then at most one KDF run.
        hashes = list(rotation.stored_hashes(station))
        for role, hashed in hashes:
            # A fast hash is checked in microseconds; only a chosen one is worth the cache
            # (asked about its own hash only: a miss on another hash evicts the entry).
            if (passwords.verify(password, hashed) if passwords.is_fast(hashed)
                    else self.credentials.verified(station_id, password, hashed)):
                login.matched(role, hashed)
                return None
        attacked = self.throttle.under_attack(station_id)
        chosen = next(((role, hashed) for role, hashed in hashes
                       if not passwords.is_fast(hashed)), None)
        if chosen is None:
            # Generated passwords only: a wrong one is answered after a dummy check, as an
            # unknown id is (_as_if_known).
            return await self._dummy_check(source, station_id, password, "wrong password")
        role, hashed = chosen
        try:
            valid = await kdf_verify(self.kdf, password, hashed,
                                     gate=partial(self.throttle.source_wait, source))
        except Overloaded as exc:
            return 503, str(exc), _retry_after(exc.retry_after)
        except Refused as exc:
            return 429, "too many wrong passwords from this address", _retry_after(exc.wait)
        if valid:
            self.credentials.remember(station_id, password, hashed)
            login.matched(role, hashed)
            return None
        return self._failed(source, station_id, attacked)

    def _failed(self, source: str, station_id: str, attacked: float | None,
                why: str = "wrong password") -> tuple[int, str, list[tuple[bytes, bytes]]]:
        wait = self.throttle.failed(source, station_id)
        reason = why
        if wait is not None:
            reason = (f"{why}; this station is under attack" if attacked
                      else f"{why}; too many from this address")
        if not why.startswith(UNKNOWN_STATION):
            reason = WrongCredential(reason)
        if wait is not None:
            return 429, reason, [*UNAUTHORIZED_HEADERS, *_retry_after(wait)]
        return _unauthorized(reason)

    async def _as_if_known(self, station_id: str, credentials: BasicCredentials | None,
                           source: str, why: str = ""
                           ) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        """An unknown id (and a station refused by its security profile) is refused as a known
        one with a wrong password is: the same fast 401 without credentials, otherwise a check
        against passwords.DUMMY_HASH through the same KDF queue and throttle, so the answer
        (401, 429, 503) and its timing are those of a chosen password's check, and a flood of
        them is shed and throttled as guesses are. The throttle counts the id like any other
        (in memory, LRU-bounded). `why` is logged only (UNKNOWN_STATION by default)."""
        why = why or UNKNOWN_STATION
        if credentials is None or credentials.username != station_id:
            return _unauthorized(why)
        return await self._dummy_check(source, station_id, credentials.password, why)

    async def _dummy_check(self, source: str, station_id: str, password: str, why: str
                           ) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        attacked = self.throttle.under_attack(station_id)
        try:
            await kdf_verify(self.kdf, password, passwords.DUMMY_HASH,
                             gate=partial(self.throttle.source_wait, source))
        except Overloaded as exc:
            return 503, f"{why}; {exc}", _retry_after(exc.retry_after)
        except Refused as exc:
            return 429, f"{why}; too many wrong passwords from this address", \
                _retry_after(exc.wait)
        return self._failed(source, station_id, attacked, why)

    # ---- a live station --------------------------------------------------------------------
    async def _serve_station(
        self, ws: WebSocket, station_id: str, registration: str | None, booted_before: bool,
        version: Version, live: LiveConnection, lite: LiteCodec | None = None,
        login: rotation.Login | None = None, confirms: bool = False,
    ) -> None:
        """`registration` and `booted_before` as the handshake read the row; None and False
        for a station the handshake registered, which is pending and never booted. `login`:
        the stored hash its password matched; `confirms`: that login settles a rotation."""
        ctx = StationContext(station_id, version, self.store, self.settings,
                             registration or "pending", hooks=self._hooks, reader=self.reader)
        connection = StationConnection(ws, ctx, live.meter, booted_before=booted_before,
                                       lite=lite, tally=self.tally, idle=self.idle)
        previous = self.connections.get(station_id)
        self.connections[station_id] = connection
        if previous is not None:
            log.info("%s: new connection replaces the old one", station_id)
            if (slot := getattr(previous.ws, "slot", None)) is not None:
                self.listener.limits.disconnected(slot)
            await previous.replace()
            previous = None  # not kept alive by this connection's frame
        now = timestamps.now_utc()
        try:
            await self.store.run(lambda: provisioning.mark_connected(station_id, version.value,
                                                                     now))
        except Exception as exc:
            # A full disk or an I/O error: nothing the station sends could be stored. It is
            # told 1011 (try again later) and forgotten, so it is not counted online.
            await self._not_recorded(connection, exc)
            return
        log.info("%s: connected with %s", station_id, ws.subprotocol or version.value)
        if confirms and login is not None and login.hashed is not None:
            await self._confirm_rotation(station_id, login.hashed)
        try:
            await connection.run(on_ready=partial(self._deliver_queued_when_accepted,
                                                  login=login or rotation.Login()),
                                 side=self.listener.side_nursery)
        finally:
            # Cancelled from outside (the connection's own nursery may have absorbed the
            # Cancelled): the server is going away, and the station should hear 1001.
            exiting = self.stopping or trio.current_effective_deadline() == -math.inf
            if connection.close_code is None and exiting:
                await connection.going_away(trio.current_time() + CANCELLED_CLOSE_TIMEOUT)
            elif self.connections.get(station_id) is not connection:
                await connection.close_replaced()
            live.close_reason = connection.close_reason
            if exiting:
                # No await: a checkpoint here, in a cancelled task, raises and unwinds once
                # more, for each of 10,000 stations.
                self._forget_at_exit(connection)
            else:
                with trio.CancelScope(shield=True):
                    await self._forget(connection)

    async def _not_recorded(self, connection: StationConnection, exc: Exception) -> None:
        station_id = connection.station_id
        log.warning("%s: closed with %d, its connection cannot be stored: %s", station_id,
                    CLOSE_INTERNAL_ERROR, exc)
        connection.close_code = CLOSE_INTERNAL_ERROR
        connection.close_reason = f"closed {CLOSE_INTERNAL_ERROR} the store cannot commit"
        if self.connections.get(station_id) is connection:
            del self.connections[station_id]
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await connection.ws.aclose(CLOSE_INTERNAL_ERROR, "try again later")

    async def _deliver_queued_when_accepted(self, connection: StationConnection,
                                            login: rotation.Login) -> None:
        # OCPP has the CSMS wait for the station: nothing automatic goes out before its
        # BootNotification on this connection is Accepted, or, for a station accepted before,
        # before its first message on this connection (see StationConnection.accepted).
        await connection.accepted.wait()
        await self.commands.deliver_queued(connection)
        # Last, once the settings are settled (the policy may queue the station for its turn
        # and run this later): an accepted new password makes the station reconnect (OCPP
        # 2.0.1 A01).
        await self.policy.on_accepted(connection, then=partial(self.rotation.on_accepted,
                                                               connection, login))

    async def _confirm_rotation(self, station_id: str, hashed: str) -> None:
        """The station logged in with a rotated password: its fallbacks go (net/rotation.py).
        If this cannot be stored they stay, which locks nobody out."""
        try:
            if await self.store.run(partial(rotation.confirm, station_id, hashed)):
                log.info("%s: logged in with its new password; the old one no longer works",
                         station_id)
        except Exception as exc:  # a full disk: the next login with it tries again
            log.warning("%s: its new password's first login cannot be stored: %s",
                        station_id, exc)

    def _log_disconnected(self, connection: StationConnection, orderly_level: int = logging.INFO
                          ) -> bool:
        """Logs the end of `connection`; returns whether it still held its station."""
        station_id = connection.station_id
        orderly = connection.close_code in ORDERLY_CLOSE_CODES
        level = orderly_level if orderly else logging.WARNING
        if log.isEnabledFor(level):
            reason = connection.close_reason
            if connection.close_code is not None and str(connection.close_code) not in reason:
                reason = f"{connection.close_code} {reason}"
            log.log(level, "%s: disconnected (%s)", station_id, reason)
        if self.connections.get(station_id) is not connection:
            return False  # replaced: the new connection owns the station's presence now
        del self.connections[station_id]
        return True

    def _forget_at_exit(self, connection: StationConnection) -> None:
        """The server is shutting down: the offline state is written for all stations at
        once after the last connection ended (_write_offline_at_exit)."""
        # Once stop() has begun, the stop's summary line counts the 1001s: a line per station
        # at INFO would be 10,000 lines (and a tenth of the stop's CPU); DEBUG keeps them.
        level = logging.DEBUG if self.stopping else logging.INFO
        if self._log_disconnected(connection, level):
            self._offline_at_exit[connection.station_id] = connection.last_seen

    async def _forget(self, connection: StationConnection) -> None:
        if not self._log_disconnected(connection):
            return
        station_id = connection.station_id
        last_seen: datetime = connection.last_seen
        try:
            await self.store.run(lambda: provisioning.mark_disconnected(station_id, last_seen))
        except Exception as exc:  # a full disk: the next start marks every station offline
            log.warning("%s: its disconnection cannot be stored: %s", station_id, exc)


def _logged(work: Callable[[dict[str, datetime]], None], argument: dict[str, datetime],
            what: str) -> None:
    try:
        work(argument)
    except Exception as exc:  # a full disk: the next start marks every station offline
        log.warning("%s cannot be stored: %s", what, exc)
        raise


def _mark_offline_at_exit(seen: dict[str, datetime]) -> None:
    """The fast exit's offline state of `seen` (station id: last seen), in VALUES lists:
    the process exits after (db/bulk.py)."""
    _logged(partial(provisioning.mark_all_disconnected, exiting=True), seen,
            f"the offline state of {len(seen)} stations")


async def _until_stopped(connections: list[StationConnection], deadline: float
                         ) -> list[StationConnection]:
    """Waits until every connection has stopped or `deadline` (trio time) has passed; returns
    the others."""
    waiting = connections
    with trio.move_on_at(deadline):
        while waiting := [c for c in waiting if not c.stopped]:
            await trio.sleep(STOP_POLL)
    return [c for c in waiting if not c.stopped]


class _StationHooks:
    """What the services are told of every station's messages (versions/context.py)."""

    __slots__ = ("_server",)

    def __init__(self, server: CsmsServer) -> None:
        self._server = server

    def meter_seen(self, station_id: str, evse_id: int) -> None:
        self._server.progress.seen(station_id, evse_id)

    async def heartbeat_for(self, station_id: str, version: Version) -> int:
        return await self._server.policy.heartbeat_for(station_id, version)

    def cost_changed(self, station_id: str, evse_id: int) -> None:
        self._server.costs.meter_values(station_id, evse_id)

    def cost_told(self, tx_id: int, cost: int) -> None:
        self._server.costs.told(tx_id, cost)


def _web_app_when_asked(control: ServerControl) -> Callable[..., Awaitable[None]]:
    """The web page's app, built at its first request: its templates and their engine are
    about 5 MB that a server nobody browses need not hold (docs/PERFORMANCE.md, idle RSS)."""
    app: Callable[..., Awaitable[None]] | None = None

    async def web(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        nonlocal app
        if app is None:
            from lite_csms.web.app import build_web_app
            app = build_web_app(control)
        await app(scope, receive, send)

    return web


class WrongCredential(str):
    """The logged reason of a refusal whose credential for a known station was checked and
    found wrong (a 401, or the 429 that failure earns): the only refusals charged to the
    station's data budget. Refusals without a credential, before the database or the check
    (a throttled source, an overloaded KDF) and at accept() are charged to no one."""

    __slots__ = ()


UNAUTHORIZED_BODY = "unauthorized"
# The body of each refusal, whatever its reason (404 only when reveal_unknown_stations).
PUBLIC_BODIES = {401: UNAUTHORIZED_BODY, 429: "too many wrong passwords from this address",
                 503: "the server is busy"}
# Starts the logged reason of every refusal of an id the database does not know.
UNKNOWN_STATION = "unknown station"
UNAUTHORIZED_HEADERS = [(b"WWW-Authenticate", b'Basic realm="lite-csms", charset="UTF-8"')]


def _fast_match(station: Station | None, credentials: BasicCredentials) -> bool:
    """Whether `credentials` carry one of the station's generated passwords (its own or one
    a rotation sent it): no KDF to find out."""
    return station is not None and any(
        passwords.is_fast(hashed) and passwords.verify(credentials.password, hashed)
        for _, hashed in rotation.stored_hashes(station))


def _unauthorized(reason: str) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """401 with one body and one challenge whatever the reason (logged, never sent)."""
    return 401, reason, UNAUTHORIZED_HEADERS


def _caps(settings: Settings) -> Caps:
    """The caps, with the soft descriptor limit raised to the hard one first."""
    before, after = raise_descriptor_limit()
    if after > before:
        log.info("descriptor limit raised from %d to %d", before, after)
    wanted = settings.max_connections and settings.max_connections + settings.max_handshakes
    descriptors = effective_cap(wanted, after)
    connections = min(settings.max_connections or descriptors, descriptors)
    if descriptors < wanted or settings.max_connections == 0:
        log.warning("at most %d connections (stations and handshakes): the descriptor limit "
                    "is %d", descriptors, after)
    return Caps(connections=connections, handshakes=settings.max_handshakes,
                per_source=settings.max_connections_per_source, descriptors=descriptors,
                handshakes_per_source=settings.max_handshakes_per_source)


def _retry_after(seconds: float) -> list[tuple[bytes, bytes]]:
    return [(b"Retry-After", str(max(1, math.ceil(seconds))).encode())]
