"""Use cases: ``BrokerService`` (submit, claim, report, admin) and maintenance (sweep,
prune, callback delivery), over the store ports."""
