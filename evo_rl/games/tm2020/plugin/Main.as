// EVO RL telemetry for TrackMania 2020.
//
// Serves TCP on 127.0.0.1 (the Port setting) to one client at a time. While the player drives,
// it writes one EVO RL record (Record.as, generated from evo_rl/games/tm2020/protocol.py) per
// game frame, and runs the commands the client sends: ping, respawn (a new run from the start
// line) and restart the map. When the client leaves it listens again. docs/games.md has the details.

[Setting name="Port" description="TCP port on 127.0.0.1 that EVO RL connects to (game.port)" min=1024 max=65535]
int S_Port = 9100;

uint g_frame = 0;  // records written since the plugin started

void Main()
{
    while (true) {
        auto server = Net::Socket();
        if (!server.Listen("127.0.0.1", uint16(S_Port))) {
            warn("EVO RL: cannot listen on 127.0.0.1:" + S_Port + " (is the port in use?); retrying in 5 s");
            sleep(5000);
            continue;
        }
        print("EVO RL: waiting for a client on 127.0.0.1:" + S_Port);
        while (!server.CanRead()) {
            yield();
        }
        auto client = server.Accept();
        server.Close();  // one client at a time: others are refused until this one leaves
        if (client is null) {
            continue;
        }
        while (!client.CanWrite()) {
            yield();
        }
        print("EVO RL: client connected");
        Serve(client);
        client.Close();
        print("EVO RL: client left");
    }
}

// Records out, commands in, until a write fails (the client left) or a command frame is invalid.
void Serve(Net::Socket@ client)
{
    auto values = EvoRecord::Values();
    auto command = EvoCommand::Frame();
    auto buf = MemoryBuffer(EvoRecord::SIZE);
    values.command_ack = 0;
    while (true) {
        while (client.Available() >= int(EvoCommand::SIZE)) {
            if (!EvoCommand::Read(client, command)) {
                warn("EVO RL: invalid command frame (another protocol version?); closing the connection");
                return;
            }
            Run(command.command);
            values.command_ack = command.seq;
        }
        if (Telemetry::Read(values)) {
            values.frame = g_frame++;
            buf.Seek(0, 0);
            EvoRecord::Write(buf, values);
            buf.Seek(0, 0);
            if (!client.Write(buf)) {
                return;
            }
        }
        yield();  // next frame
    }
}

void Run(uint16 command)
{
    if (command == EvoCommand::RESPAWN) {
        Telemetry::Respawn();
    } else if (command == EvoCommand::RESTART_MAP) {
        startnew(Telemetry::RestartMap);
    } else if (command != EvoCommand::PING) {
        warn("EVO RL: unknown command " + command);
    }
}
