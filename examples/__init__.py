"""Runnable examples of genflow workflows.

* `examples.seed_readme`: the Go seed library's README workflow, ported.
* `examples.pizza`: a pizza order: cart events, a manager's confirmation with a
  deadline, a payment thread running while the pizza is cooked.
* `examples.approval`: a purchase approval whose handler object opens and
  withdraws requests in an outside inbox (setup / handle / teardown).
* `examples.money_transfer`: Temporal's money-transfer sample: withdraw,
  deposit, and on a failed deposit a refund, then the failure goes on.
* `examples.sms_verification`: three tries to type a texted code back, all
  within one deadline.
* `examples.seat_hold`: a seat held while the customer pays; cancellation
  releases it (cleanup in a Catch of `Cancelled` and a Finally), and a daemon
  thread's reminders stop with the main thread.
* `examples.demo`: the README's demo, `python -m examples.demo`: the pizza order
  on an embedded SQLite file, moved on by two processes, with a timer firing.

Each module can be run on its own (`python -m examples.seed_readme`...).
"""
