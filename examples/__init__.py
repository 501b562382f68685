"""Runnable examples of genflow workflows.

* `examples.seed_readme`: the Go seed library's README workflow, ported.
* `examples.pizza`: a pizza order: cart events, a manager's confirmation with a
  deadline, a payment thread running while the pizza is cooked.
* `examples.approval`: a purchase approval whose handler object opens and
  withdraws requests in an outside inbox (setup / handle / teardown).
* `examples.demo`: the README's demo, `python -m examples.demo`: the pizza order
  on an embedded SQLite file, moved on by two processes, with a timer firing.

Each module can be run on its own (`python -m examples.seed_readme`...).
"""
