"""The functions themselves: detach (request → one detach call → ``ecs-detach.accepted``) and
poll (one look at a job → a continuation or one result event), what they share (result
publishing, batch reports) and the ports they are written against."""
