"""The relay: frames routed to processors that read Redis streams (detektr's ProcessorClient), into those streams."""
