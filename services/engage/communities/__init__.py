"""engage's communities: groups of similar customers (an RFM segment, a kind of strategically
significant customer, a lifecycle stage, or a hand-picked list) who post, reply and mark
each other's answers helpful; identify counts helpful marks as benchmark evidence."""
