"""One I/O thread for every source of a process: sockets by ``selectors``, pacing on one grid.

A thread per source costs little while it sleeps, but at sensor rates each one wakes
tens of times a second, and every wake-up is a thread switch plus a hand-over of the
GIL. With a dozen streams that overhead is most of an agent's CPU. The hub replaces
those threads with one loop that

* waits on every datagram socket at once (``selectors``) and, when one is readable,
  reads everything queued on it and hands it to the sink in one block;
* wakes paced sources (replay, synthetic) on one shared grid of ``tick_s`` seconds, so
  that sixteen replay streams cost one wake-up per tick instead of sixteen, each source
  handing over every sample that fell due since its last turn;
* leaves the MQTT source on its client's own network loop (the hub only starts and
  stops it).

Sources opt in by subclassing :class:`HubSource` and implementing three non-blocking
hooks, all called on the hub thread: ``_open`` (bind, connect; returns when the source
wants its first turn), ``_turn`` (emit what is due; returns when it wants the next one)
and ``_shutdown``. A hook that raises is recorded in the source's ``last_error``; the
source is shut down and opened again after its ``restart_delay_s``, as a source thread
would have been restarted. Plain :class:`~edgefleet.agent.sources.base.Source` plugins
that implement a blocking ``_run`` keep a thread of their own.

The hub is one per process (:func:`default_hub`): an agent is one process, so all its
sources share the thread. A sink that blocks (the ``block`` back-pressure policy with a
full ring) therefore pauses every stream until the consumer catches up; since one
inference worker consumes all streams, a full ring means all of them are behind anyway.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import selectors
import socket
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from edgefleet.agent.sources.base import BaseSourceConfig, Sink, Source

__all__ = ["HubSource", "SourceHub", "default_hub"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseSourceConfig)

Command = Callable[[], None]


class SourceHub:
    """The loop: a selector, a timer heap and a command queue, on one daemon thread.

    ``tick_s`` is the pacing grid: a paced source's turn is moved to the next multiple of
    it, so sources due at nearly the same time share one wake-up. It bounds the extra
    latency pacing adds to a sample.
    """

    def __init__(self, name: str = "source-io", tick_s: float = 0.1) -> None:
        if not tick_s > 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        self.name = name
        self.tick_s = tick_s
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self._commands: deque[Command] = deque()
        self._lock = threading.Lock()
        # Turns by due time: a heap of the distinct times, and the turns due at each in the order
        # they were asked for. Paced sources share grid lines, so a pass pops one time, not one
        # entry per source.
        self._timers: list[float] = []
        self._turns: dict[float, list[tuple[HubSource[Any], int]]] = {}
        self._thread: threading.Thread | None = None
        # (before, after) of every pass that runs callbacks or turns (see add_pass_hooks)
        self._pass_hooks: tuple[tuple[Command, Command], ...] = ()
        self.wakeups = 0
        """Times the loop woke up (for benchmarks and tests); only the hub thread writes it."""

    # -- any thread ------------------------------------------------------------------------------
    @property
    def on_hub_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, command: Command) -> None:
        """Run ``command`` on the hub thread (starting the thread if needed)."""
        if self.on_hub_thread:
            command()
            return
        with self._lock:
            self._commands.append(command)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        with contextlib.suppress(BlockingIOError):  # a full pipe: the loop is already due to wake
            self._wake_w.send(b"\0")

    def call_and_wait(self, command: Command, timeout: float) -> bool:
        """Run ``command`` on the hub thread and wait for it; False if it did not finish in time."""
        if self.on_hub_thread:
            command()
            return True
        done = threading.Event()

        def run() -> None:
            try:
                command()
            finally:
                done.set()

        self.call(run)
        return done.wait(timeout)

    def add_pass_hooks(self, before: Command, after: Command) -> None:
        """Call ``before`` ahead of every pass of the loop that runs reader callbacks or turns, and
        ``after`` once the pass is done (also when one of them failed); any thread may add them.

        A pass hands over everything that fell due on the grid line; a consumer fed by many
        streams (the batcher) uses these to be woken once per pass rather than once per stream.
        Hooks must be quick and must not raise.
        """
        with self._lock:
            self._pass_hooks = (*self._pass_hooks, (before, after))

    def remove_pass_hooks(self, before: Command, after: Command) -> None:
        with self._lock:
            self._pass_hooks = tuple(h for h in self._pass_hooks if h != (before, after))

    # -- hub thread only ---------------------------------------------------------------------------
    def add_reader(self, sock: socket.socket, on_readable: Callable[[], None]) -> None:
        self._selector.register(sock, selectors.EVENT_READ, on_readable)

    def remove_reader(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):  # never registered, or already closed
            self._selector.unregister(sock)

    def schedule(
        self, source: HubSource[Any], when: float, generation: int, now: float | None = None
    ) -> None:
        """Give ``source`` a turn at monotonic time ``when``, moved up to the next grid line.

        A turn due already (``when`` not after ``now``, the current monotonic time when not given)
        runs on the loop's next pass, after the sockets and the other sources: that is how an
        unpaced source keeps going. Turns due at the same time run in the order they were asked for.
        """
        if when > (time.monotonic() if now is None else now):
            when = math.ceil(when / self.tick_s - 1e-9) * self.tick_s
        turns = self._turns.get(when)
        if turns is None:
            self._turns[when] = [(source, generation)]
            heapq.heappush(self._timers, when)
        else:
            turns.append((source, generation))

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _loop(self) -> None:
        while True:
            self._run_commands()
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0] - time.monotonic())
            events = self._selector.select(timeout)
            self.wakeups += 1
            hooks = self._pass_hooks
            for before, _ in hooks:
                before()
            try:
                self._run_pass(events)
            finally:
                for _, after in hooks:
                    after()

    def _run_pass(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in events:
            callback: Callable[[], None] = key.data
            try:
                callback()
            except Exception:  # a callback guards itself; this only keeps the loop alive
                log.exception("source hub: reader callback failed")
        now = time.monotonic()
        timers = self._timers
        if not timers or timers[0] > now:
            return
        due = self._turns.pop(heapq.heappop(timers))
        while timers and timers[0] <= now:
            due += self._turns.pop(heapq.heappop(timers))
        for source, generation in due:  # a turn may reschedule itself for "now": the next pass
            source._hub_turn(self, generation, now)

    def _run_commands(self) -> None:
        if not self._commands:  # the usual pass: no lock needed to see an empty queue
            return
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            try:
                command()
            except Exception:
                log.exception("source hub: command failed")


_default: SourceHub | None = None
_default_lock = threading.Lock()


def default_hub() -> SourceHub:
    """The process's hub, created on first use; its thread starts with the first source."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SourceHub()
        return _default


class HubSource(Source[C]):
    """A source driven by a :class:`SourceHub` instead of a thread of its own."""

    STOP_TIMEOUT_S: ClassVar[float] = 5.0

    def __init__(self, config: C, sink: Sink) -> None:
        super().__init__(config, sink)
        self._hub: SourceHub | None = None
        # bumped on every open and shutdown, so a timer set by an earlier life is ignored
        self._generation = 0
        self._is_open = False

    # -- hooks (hub thread) ----------------------------------------------------------------------
    @abstractmethod
    def _open(self, hub: SourceHub, now: float) -> float | None:
        """Acquire resources; return when the first turn is wanted (monotonic), or None for none."""

    def _turn(self, now: float) -> float | None:
        """Emit what is due at ``now``; return when the next turn is wanted, or None for none."""
        return None

    def _shutdown(self) -> None:
        """Release what ``_open`` acquired; must not raise for a half-opened source."""

    def _run(self) -> None:
        raise RuntimeError(f"{type(self).__name__} is driven by a SourceHub, not a thread of its own")

    # -- public surface ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._hub is not None

    def start(self, hub: SourceHub | None = None) -> None:
        if self._hub is not None:
            return
        self._stopping.clear()
        target = self._hub = hub or default_hub()
        target.call(lambda: self._hub_open(target, self._generation))

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        hub, self._hub = self._hub, None
        if hub is not None:
            wait = self.STOP_TIMEOUT_S if timeout is None else timeout
            if not hub.call_and_wait(self._hub_shutdown, wait):
                self._log.warning("source %r did not stop within %.1fs", self.name, wait)
        self._close()

    # -- hub side ----------------------------------------------------------------------------------
    def _hub_open(self, hub: SourceHub, generation: int) -> None:
        if self._stopping.is_set() or generation != self._generation:
            return  # stopped (or restarted) before the hub got to it
        self._generation += 1
        try:
            self._is_open = True
            first = self._open(hub, time.monotonic())
        except Exception as exc:
            self._failed(hub, exc)
            return
        if first is not None:
            hub.schedule(self, first, self._generation)

    def _hub_turn(self, hub: SourceHub, generation: int, now: float) -> None:
        if generation != self._generation or self._stopping.is_set():
            return
        if not self._is_open:
            self._hub_open(hub, generation)
            return
        try:
            following = self._turn(now)
        except Exception as exc:
            self._failed(hub, exc)
            return
        if self._finished.is_set():
            self._hub_shutdown()
            if self._hub is hub:
                self._hub = None  # a finished source is no longer running, as its thread would end
            return
        if following is not None:
            hub.schedule(self, following, generation, now)

    def _hub_shutdown(self) -> None:
        self._generation += 1
        if not self._is_open:
            return
        self._is_open = False
        try:
            self._shutdown()
        except Exception as exc:
            self._record_error(f"closing: {type(exc).__name__}: {exc}")

    def _failed(self, hub: SourceHub, exc: Exception) -> None:
        delay = self.config.restart_delay_s
        self._record_error(f"{type(exc).__name__}: {exc}; restarting in {delay}s")
        self._hub_shutdown()
        # a reopen is a turn of a closed source: _hub_turn opens it again
        hub.schedule(self, time.monotonic() + delay, self._generation)
