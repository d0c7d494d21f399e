"""hybridfleet's wire contract: message types, their codecs and subject names.

Nothing in this package does I/O. See docs/wire-format.md for the contract in prose;
schemas/vectors/ holds golden messages in both wire forms. Import each name from the
module that defines it:

* ``messages``: the message types (``Frame``, ``InferenceResult``, ``Escalation``,
  ``DeadLetter``) and their wire names (``KINDS``);
* ``limits``: the bounds (schema version, sizes, times) and the payload size check;
* ``codec``: msgpack, the default form (``encode``, ``decode_frame``, ...);
* ``jsonform``: the JSON form and the ``Content-Type`` / ``Accept`` headers;
* ``writer`` and ``reader``: the wire map both forms share (``to_map``, ``from_map``),
  read field by field with ``fields`` and checked for numbers and times by ``scalars``;
* ``subjects``: every subject, stream, bucket and header name, and ``check_token``;
* ``heartbeat``: the fleet heartbeat; ``checks``: how settings' numbers are checked;
  ``errors``: the exceptions.
"""
