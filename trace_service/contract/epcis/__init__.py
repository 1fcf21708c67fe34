"""GS1 EPCIS 2.0 in pure code: the standard's schema, the CBV event hash, the identifiers, and the mapping
between EPCIS events and the city's own events (docs/epcis.md). No I/O."""
