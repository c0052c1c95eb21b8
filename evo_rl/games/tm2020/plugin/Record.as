// Record.as: the EVO RL record and command layouts of protocol version 1, little-endian.
// Generated from the tables of evo_rl/games/tm2020/protocol.py by
// `python -m evo_rl.games.tm2020.protocol --write`; do not edit (a test compares the two).

namespace EvoRecord
{
    const uint MAGIC = 0x4C525645;  // 'EVRL'
    const uint16 VERSION = 1;
    const uint16 SIZE = 87;

    // The values of one record; Telemetry.as and Main.as set them each frame.
    class Values
    {
        uint frame;                // game frame counter, +1 per record, from 0 when the plugin starts
        int race_time_ms;          // race time, ms (negative during the start countdown)
        float pos_x;               // position x, m
        float pos_y;               // position y (up), m
        float pos_z;               // position z, m
        float dir_x;               // unit heading vector x
        float dir_y;               // unit heading vector y (up)
        float dir_z;               // unit heading vector z
        float vel_x;               // velocity x, m/s
        float vel_y;               // velocity y (up), m/s
        float vel_z;               // velocity z, m/s
        float speed_kmh;           // forward speed, km/h (negative when reversing)
        uint8 gear;                // engaged gear
        float rpm;                 // engine speed, rpm
        float gas;                 // gas input the game applied, 0..1
        float brake;               // brake input the game applied, 0..1
        float steer;               // steering input the game applied, -1 (left) .. 1 (right)
        uint16 checkpoints;        // checkpoints passed this run
        uint16 checkpoints_total;  // checkpoints of the map, the finish not counted
        uint8 finished;            // 1 once the finish line is crossed this run, else 0
        uint8 wall_contact;        // 1 touching a wall, 0 not, 255 unknown
        uint8 wheel_fl;            // 1 when the front left wheel touches the ground
        uint8 wheel_fr;            // 1 when the front right wheel touches the ground
        uint8 wheel_rl;            // 1 when the rear left wheel touches the ground
        uint8 wheel_rr;            // 1 when the rear right wheel touches the ground
        uint command_ack;          // sequence number of the last command handled on this connection, 0 before any
    }

    // Appends one record to buf, in the order of the table.
    void Write(MemoryBuffer@ buf, Values@ v)
    {
        buf.Write(MAGIC);
        buf.Write(VERSION);
        buf.Write(SIZE);
        buf.Write(v.frame);
        buf.Write(v.race_time_ms);
        buf.Write(v.pos_x);
        buf.Write(v.pos_y);
        buf.Write(v.pos_z);
        buf.Write(v.dir_x);
        buf.Write(v.dir_y);
        buf.Write(v.dir_z);
        buf.Write(v.vel_x);
        buf.Write(v.vel_y);
        buf.Write(v.vel_z);
        buf.Write(v.speed_kmh);
        buf.Write(v.gear);
        buf.Write(v.rpm);
        buf.Write(v.gas);
        buf.Write(v.brake);
        buf.Write(v.steer);
        buf.Write(v.checkpoints);
        buf.Write(v.checkpoints_total);
        buf.Write(v.finished);
        buf.Write(v.wall_contact);
        buf.Write(v.wheel_fl);
        buf.Write(v.wheel_fr);
        buf.Write(v.wheel_rl);
        buf.Write(v.wheel_rr);
        buf.Write(v.command_ack);
    }
}

namespace EvoCommand
{
    const uint MAGIC = 0x43525645;  // 'EVRC'
    const uint16 VERSION = 1;
    const uint SIZE = 12;
    const uint16 PING = 1;
    const uint16 RESPAWN = 2;
    const uint16 RESTART_MAP = 3;

    class Frame
    {
        uint16 command;  // 1 ping, 2 respawn, 3 restart the map
        uint seq;        // sequence number, > 0; records echo it in command_ack once handled
    }

    // Reads one command frame (SIZE bytes must be available); false when its magic or version is wrong.
    bool Read(Net::Socket@ sock, Frame@ c)
    {
        uint magic = sock.ReadUint32();
        uint16 version = sock.ReadUint16();
        c.command = sock.ReadUint16();
        c.seq = sock.ReadUint32();
        return magic == MAGIC && version == VERSION;
    }
}
