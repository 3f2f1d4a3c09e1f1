"""The line for the one trainer an app has: who is training, who waits, and how long they will wait.

An app trains one model at a time (a free Space has two cores), so a visitor who presses Train
while someone else trains waits. gradio tells them their rank; this tells them the wait, from
the runs' own time budgets: the running one's budget left, plus every waiting run ahead's budget,
plus what a run takes beyond its budget (preparing the data, the last evaluation, saving), learned
from the runs that ended by their budget here: from the runs of the same settings (``kind``) where
there are some, since that time grows with the model and its data, else from all of them.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

# What a run takes beyond its budget until one here has ended by its budget (then it is measured).
FIRST_OVERHEAD_SECONDS = 3.0
# A place taken but never used (the visitor left, their run failed its checks, or a client only
# asked) counts in others' waits until this long after the wait it was told: a run that really
# waits starts about then. Never longer than an hour.
FORGET_WAITING_GRACE_SECONDS = 30.0
FORGET_WAITING_AFTER_SECONDS = 3600.0
# A running run says it is alive at every event it streams (several a second); one silent for this
# long has ended without saying so (a handler dropped without being closed) and is forgotten.
FORGET_SILENT_RUN_AFTER_SECONDS = 60.0


@dataclass
class Ticket:
    key: str  # who: a session
    budget: float | None  # the run's time budget in seconds; None = no budget, its length is unknown
    joined: float
    kind: str = ""  # the run's settings, as the caller names them: runs of one kind take alike
    started: float | None = None
    alive: float | None = None  # when the running run last said it is alive
    told: float = 0.0  # the wait it was told when it joined


@dataclass
class Estimate:
    ahead: int  # runs before this one: the running one and those waiting ahead
    seconds: float  # estimated wait (a lower bound when ``unknown`` > 0)
    unknown: int  # runs ahead without a time budget, whose length nobody knows

    def words(self) -> str:
        """The estimate as the Train tab shows it ("" when nobody is ahead)."""
        if not self.ahead:
            return ""
        runs = "1 training" if self.ahead == 1 else f"{self.ahead} trainings"
        if self.unknown:
            wait = (f"at least {format_wait(self.seconds)} ({self.unknown} of them without a time budget, so "
                    "how much longer nobody knows)")
        else:
            wait = f"about {format_wait(self.seconds)}"
        return (f"**waiting for the trainer**: {runs} ahead of yours (one app trains one model at a time); "
                f"estimated wait {wait}, from their time budgets.")


def format_wait(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


class WaitingLine:
    """Thread-safe: handlers of several visitors call it at once."""

    def __init__(self, overhead: float = FIRST_OVERHEAD_SECONDS, clock=time.monotonic):
        self.guess = overhead  # until a run has ended by its budget here
        self.measured: list[float] = []  # the last runs' overheads
        self.measured_by_kind: dict[str, list[float]] = {}
        self.clock = clock
        self.tickets: list[Ticket] = []  # in the order they joined; a started one stays until it finishes
        self.lock = threading.Lock()

    def join(self, key: str, budget: float | None, kind: str = "") -> Estimate:
        """``key`` waits for a run of ``budget`` seconds (joining again replaces its place)."""
        with self.lock:
            self.forget_stale()
            self.tickets = [t for t in self.tickets if t.key != key]
            ticket = Ticket(key, budget or None, self.clock(), kind)
            self.tickets.append(ticket)
            estimate = self.estimate_locked(key)
            ticket.told = estimate.seconds
            return estimate

    def start(self, key: str, budget: float | None, kind: str = "") -> None:
        """``key``'s run begins (one that never joined, an API call, joins as it starts).

        gradio's queue runs the trainings first come, first served: a place taken before this one
        and still not started is not in that queue (its visitor left, its run failed its checks,
        or a client only asked), and goes."""
        with self.lock:
            ticket = next((t for t in self.tickets if t.key == key), None)
            if ticket is None:
                ticket = Ticket(key, budget or None, self.clock(), kind)
                self.tickets.append(ticket)
            self.tickets = [t for t in self.tickets
                            if t is ticket or t.started is not None or t.joined > ticket.joined]
            ticket.budget, ticket.kind, ticket.started = budget or None, kind, self.clock()
            ticket.alive = ticket.started

    def still_running(self, key: str) -> None:
        """``key``'s run is alive (its handler calls this at every event it streams)."""
        with self.lock:
            for ticket in self.tickets:
                if ticket.key == key and ticket.started is not None:
                    ticket.alive = self.clock()

    def finish(self, key: str, ended_by_budget: bool) -> None:
        """``key``'s run is over; one that ran to its budget teaches the overhead."""
        with self.lock:
            ticket = next((t for t in self.tickets if t.key == key), None)
            self.tickets = [t for t in self.tickets if t.key != key]
            if ticket and ticket.started is not None and ticket.budget and ended_by_budget:
                measured = max(0.0, self.clock() - ticket.started - ticket.budget)
                self.measured = [*self.measured, measured][-5:]
                same = self.measured_by_kind.setdefault(ticket.kind, [])
                same[:] = [*same, measured][-3:]

    def overhead(self, kind: str = "") -> float:
        """What a run of ``kind`` takes beyond its budget: the lower median of the last runs of
        that kind, else of the last runs, else the guess. The lower median, because the first run
        after the app starts is slower (torch warms up)."""
        measured = self.measured_by_kind.get(kind) or self.measured
        return statistics.median_low(measured) if measured else self.guess

    def leave(self, key: str) -> None:
        with self.lock:
            self.tickets = [t for t in self.tickets if t.key != key]

    def estimate(self, key: str) -> Estimate:
        with self.lock:
            self.forget_stale()
            return self.estimate_locked(key)

    def estimate_locked(self, key: str) -> Estimate:
        now, seconds, unknown, ahead = self.clock(), 0.0, 0, 0
        for ticket in self.tickets:
            if ticket.key == key:
                break
            ahead += 1
            if ticket.budget is None:
                unknown += 1
                continue
            left = ticket.budget + self.overhead(ticket.kind)
            if ticket.started is not None:
                left = max(0.0, left - (now - ticket.started))
            seconds += left
        return Estimate(ahead, seconds, unknown)

    def forget_stale(self) -> None:
        now = self.clock()
        def kept(ticket: Ticket) -> bool:
            if ticket.started is not None:
                return now - ticket.alive < FORGET_SILENT_RUN_AFTER_SECONDS
            overdue = 1.5 * ticket.told + FORGET_WAITING_GRACE_SECONDS
            return now - ticket.joined < min(overdue, FORGET_WAITING_AFTER_SECONDS)

        self.tickets = [t for t in self.tickets if kept(t)]
