"""Rules of submitters and admins: submit (idempotency keys), cancel, approve, requeue."""

from __future__ import annotations

import functools

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.models import ExecutionRecord, LogQuery, SubmitResult, WorkStatus
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import MAX_ITEMS, MachineBase, mismatch, pick_or_none


class AdminRules(MachineBase):
    """Work submitted and managed by people, not by agents."""

    @precondition(lambda self: self.submits < MAX_ITEMS)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        """A new item; sometimes a key that is taken (not created) or was pruned (created).

        Enabled by the submits made, not the items created: whether a key is still
        taken depends on what was pruned, which depends on how races came out.
        """
        self.submits += 1
        work_id = self._new_id()
        item = data.draw(wst.work_items(work_id, self.now, self.agent_ids), label="item")
        got, _ = self._both(
            "submit",
            functools.partial(self.store.submit, item, "submitter", self.now),
            functools.partial(self.model.submit, item, "submitter", self.now),
        )
        result: SubmitResult = got[0]
        if result.created:
            self.work_ids.append(work_id)
            self.touched.add(work_id)
        else:
            original = result.item.item if isinstance(result.item, ExecutionRecord) else result.item
            if (
                item.idempotency_key is None
                or original.id == work_id
                or original.idempotency_key != item.idempotency_key
            ):
                raise mismatch(
                    f"invariant 8: submit of {work_id} was refused or named another item"
                )

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        work_id = self._work(data)
        reason = data.draw(wst.payloads(["test"], wst.MAX_MESSAGE_CHARS), label="reason")
        self._both(
            "cancel",
            functools.partial(self.store.cancel, work_id, "admin", self.now, reason),
            functools.partial(self.model.cancel, work_id, "admin", self.now, reason),
        )
        self.touched.add(work_id)

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        work_id = self._work(data, WorkStatus.HELD)
        self._both(
            "approve",
            functools.partial(self.store.approve, work_id, "admin", self.now),
            functools.partial(self.model.approve, work_id, "admin", self.now),
        )
        self.touched.add(work_id)

    @precondition(lambda self: self.work_ids)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        failed = [
            r.id for r in self.model.query_log(LogQuery(status=WorkStatus.FAILED, limit=10_000))
        ]
        work_id = self._work(data)
        chosen: bool = data.draw(st.booleans(), label="a failed one")
        failed_one = pick_or_none(data, failed, "failed")
        if chosen and failed_one is not None:
            work_id = failed_one
        self._both(
            "requeue",
            functools.partial(self.store.requeue, work_id, "admin", self.now),
            functools.partial(self.model.requeue, work_id, "admin", self.now),
        )
        self.touched.add(work_id)
