"""A city in a box: a seeded Zhongshan (operators and their standing trade), days of chain events with
injected faults and a supply shock, a ground truth of what was injected, and a runner that posts it all
through the API or straight to Kafka.

* :mod:`trace_service.sim.city` (pure): the operators and the nominal daily flows between them;
* :mod:`trace_service.sim.events` (pure): the events of N days, the faults and the ground truth;
* :mod:`trace_service.sim.runner`: registering, issuing keys, posting or producing, the progress bar.
"""
