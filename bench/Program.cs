using AttentionEngine.Bench.Performance;
using AttentionEngine.Bench.Verification;
using Spectre.Console.Cli;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("bench");
    config.AddCommand<VerifyCommand>("verify")
        .WithDescription("Check every available backend against the float64 oracle on generated problems.")
        .WithExample("verify", "--cases", "200")
        .WithExample("verify", "--backend", "reference", "--dtype", "bf16", "--seed", "7", "--case", "31");
    config.AddCommand<RunCommand>("run")
        .WithDescription("Measure the machine's FMA peak and bandwidth, then time the preset cases against them.")
        .WithExample("run", "--threads", "2");
});
return app.Run(args);
